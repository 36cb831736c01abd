// Package deploy holds the container deployment files. Docker does not
// run on CI, so this test checks the properties the deployment guide
// relies on by reading the files.
package deploy

import (
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
	} `yaml:"services"`
}

func readCompose(t *testing.T, path string) composeFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func TestComposeFiles(t *testing.T) {
	for _, tc := range []struct {
		file     string
		services int
	}{
		{"docker-compose.sqlite.yml", 1},
		{"docker-compose.postgres.yml", 2},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := readCompose(t, tc.file)
			if len(c.Services) != tc.services {
				t.Fatalf("%d services, want %d", len(c.Services), tc.services)
			}
			m, ok := c.Services["myelin"]
			if !ok {
				t.Fatal("no myelin service")
			}
			if strings.Join(m.Healthcheck.Test, " ") != "CMD /usr/local/bin/myelin healthcheck" {
				t.Errorf("myelin healthcheck = %q", m.Healthcheck.Test)
			}
			for _, key := range []string{"MYELIN_SERVER_NAME", "MYELIN_PUBLIC_BASEURL", "MYELIN_SERVE_WELLKNOWN", "MYELIN_ADMIN_USER", "MYELIN_ADMIN_PASSWORD"} {
				if _, ok := m.Environment[key]; !ok {
					t.Errorf("myelin lacks %s", key)
				}
			}
			if !strings.Contains(m.Environment["MYELIN_SERVER_NAME"], "${SERVER_NAME") ||
				!strings.Contains(m.Environment["MYELIN_PUBLIC_BASEURL"], "${PUBLIC_HOST") {
				t.Errorf("not parameterised by SERVER_NAME and PUBLIC_HOST: %v", m.Environment)
			}
			if len(m.Volumes) == 0 || !strings.HasSuffix(m.Volumes[0], ":/data") {
				t.Errorf("volumes = %v, want one on /data", m.Volumes)
			}
			if tc.services == 2 {
				pg := c.Services["postgres"]
				if len(pg.Healthcheck.Test) == 0 || m.DependsOn["postgres"].Condition != "service_healthy" {
					t.Errorf("postgres healthcheck %q, depends_on %+v", pg.Healthcheck.Test, m.DependsOn)
				}
				if !strings.HasPrefix(m.Environment["MYELIN_DATABASE_URL"], "postgres://") {
					t.Errorf("MYELIN_DATABASE_URL = %q", m.Environment["MYELIN_DATABASE_URL"])
				}
			}
		})
	}
}

func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	d := string(raw)
	for _, want := range []string{
		"GOTOOLCHAIN=go1.27.3", "CGO_ENABLED=0",
		"FROM gcr.io/distroless/static-debian12:nonroot", "USER 65532:65532",
		`VOLUME ["/data"]`, "EXPOSE 8008 8448",
		`CMD ["/usr/local/bin/myelin", "healthcheck"]`, `ENTRYPOINT ["/usr/local/bin/myelin"]`,
	} {
		if !strings.Contains(d, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
