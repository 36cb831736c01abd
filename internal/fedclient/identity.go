package fedclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// PostIdentity POSTs body to https://idServer+path, an identity server's
// API, and decodes the answer into out. With bearer set it authenticates
// with that identity server access token; with signed, with this
// server's X-Matrix signature (destination idServer), as identity
// servers check on 3pid/unbind. Connections go through the federation
// dialer, so the private-address rule of federation applies. A non-2xx
// answer gives *Error.
func (c *Client) PostIdentity(ctx context.Context, idServer, path, bearer string, signed bool, body, out any) error {
	content, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encoding the request to identity server %s: %w", idServer, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+idServer+path, bytes.NewReader(content))
	if err != nil {
		return fmt.Errorf("building the request to identity server %s: %w", idServer, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Myelin")
	switch {
	case bearer != "":
		req.Header.Set("Authorization", "Bearer "+bearer)
	case signed:
		auth, err := c.authorization(http.MethodPost, path, idServer, content)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", auth)
	}
	client := &http.Client{Transport: c.http.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s on identity server %s: %w", path, idServer, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of identity server %s: %w", idServer, err)
	}
	if resp.StatusCode/100 != 2 {
		return responseError(idServer, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decoding the answer of identity server %s: %w", idServer, err)
		}
	}
	return nil
}
