package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/myelin-chat/myelin/internal/fedcheck"
	"github.com/myelin-chat/myelin/internal/mxtest"
)

func TestCheckFederationCommand(t *testing.T) {
	hs := mxtest.Federation(t, "sqlite", 1)[0]
	name, ca := hs.Config.ServerName, hs.TestCA.CertFile

	var out bytes.Buffer
	if err := checkFederation([]string{name, "--ca-file", ca, "--allow-private"}, &out); err != nil {
		t.Fatalf("check-federation: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Federation check of "+name+": OK") {
		t.Errorf("text report:\n%s", out.String())
	}

	out.Reset()
	if err := checkFederation([]string{"--json", "--allow-private", "--ca-file", ca, name}, &out); err != nil {
		t.Fatalf("check-federation --json: %v", err)
	}
	var rep fedcheck.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || !rep.FederationOK || rep.ServerName != name {
		t.Fatalf("JSON report %+v, %v:\n%s", rep, err, out.String())
	}

	// Without the test CA the certificate is not trusted: non-zero exit.
	out.Reset()
	err := checkFederation([]string{"--allow-private", name}, &out)
	if !errors.Is(err, errCheckFailed) || !strings.Contains(out.String(), "FAILED") {
		t.Fatalf("untrusted: err = %v\n%s", err, out.String())
	}
	if err := checkFederation(nil, &out); err == nil {
		t.Error("no server name accepted")
	}
}
