package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/myelin-chat/myelin/internal/mxtest"
	"github.com/myelin-chat/myelin/internal/tlscert"
)

// TestMain lets the test binary stand in for `myelin serve`, so a test can
// run servers as separate processes with their own environment.
func TestMain(m *testing.M) {
	if os.Getenv("MYELIN_TEST_SERVE") == "1" {
		if err := serve(nil); err != nil {
			fmt.Fprintln(os.Stderr, "myelin:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestTwoProcessesFederateWithSSLCertFile is the deployment check:
// two servers named 127.0.0.1:PORT_A and 127.0.0.1:PORT_B, each with a
// certificate for 127.0.0.1 from a CA named only in SSL_CERT_FILE, federate
// with no settings beyond the listener, certificate and private-address
// switch. They run as separate processes because Go reads SSL_CERT_FILE
// once per process.
func TestTwoProcessesFederateWithSSLCertFile(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlscert.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	caFile, _, err := ca.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := ca.WriteCert("127.0.0.1", certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	type proc struct {
		name, url string
	}
	start := func(label string) proc {
		fedPort, clientPort := mxtest.FreePort(t), mxtest.FreePort(t)
		name := "127.0.0.1:" + fedPort
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			"MYELIN_TEST_SERVE=1",
			"SSL_CERT_FILE="+caFile,
			"MYELIN_SERVER_NAME="+name,
			"MYELIN_FEDERATION_LISTEN="+name,
			"MYELIN_TLS_CERT="+certFile, "MYELIN_TLS_KEY="+keyFile,
			"MYELIN_FEDERATION_ALLOW_PRIVATE=true",
			"MYELIN_LISTEN=127.0.0.1:"+clientPort,
			"MYELIN_DATA_DIR="+filepath.Join(dir, label),
			"MYELIN_DATABASE_URL=",
			"MYELIN_ENABLE_REGISTRATION=true",
			"MYELIN_BCRYPT_COST=4",
			"MYELIN_RATE_LIMIT=false",
			"MYELIN_LOG_LEVEL=warn",
		)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("%s exited with %v after SIGTERM", label, err)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				t.Errorf("%s did not stop within 15s of SIGTERM", label)
			}
		})
		url := "http://127.0.0.1:" + clientPort
		deadline := time.Now().Add(60 * time.Second)
		for {
			resp, err := http.Get(url + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not become healthy", label)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return proc{name: name, url: url}
	}
	a, b := start("a"), start("b")
	ctx := context.Background()
	register := func(p proc, user string) *mautrix.Client {
		cli, err := mautrix.NewClient(p.url, "", "")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: user, Password: "password-" + user})
		if err != nil {
			t.Fatalf("registering %s: %v", user, err)
		}
		cli.UserID, cli.AccessToken = resp.UserID, resp.AccessToken
		return cli
	}
	alice, bob := register(a, "alice"), register(b, "bob")
	// Version 12 explicitly: its auth chains must carry the create event,
	// which its events no longer list.
	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: "12"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(ctx, created.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{a.name}}); err != nil {
		t.Fatalf("joining across processes: %v", err)
	}
	if _, err := bob.SendText(ctx, created.RoomID, "hello from b"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := alice.Messages(ctx, created.RoomID, "", "", mautrix.DirectionBackward, nil, 50)
		if err == nil && slices.ContainsFunc(resp.Chunk, func(e *event.Event) bool {
			return e.Type == event.EventMessage && e.Content.Raw["body"] == "hello from b"
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice never saw bob's message (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
