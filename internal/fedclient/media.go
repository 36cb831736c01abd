package fedclient

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Stream sends a signed GET to dest and returns the response of a 2xx
// answer unread, for bodies too large to buffer (media); the caller closes
// its body. A non-2xx answer gives *Error.
func (c *Client) Stream(ctx context.Context, dest, path string, query url.Values) (*http.Response, error) {
	resp, err := c.send(ctx, dest, http.MethodGet, path, query, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, responseError(dest, resp.StatusCode, data)
	}
	return resp, nil
}

// FetchURL GETs an absolute http(s) URL that another server pointed us
// to (the Location part of a federation media download), unsigned,
// following at most five redirects. Every connection goes through the
// federation dialer, so the private-address rule of federation applies to
// the URL and each redirect. A non-2xx answer gives *Error.
func (c *Client) FetchURL(ctx context.Context, rawURL string) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("media location %q is not an http(s) URL", rawURL)
	}
	client := &http.Client{
		Transport: c.http.Transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("more than 5 redirects fetching %s", rawURL)
			}
			if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
				return fmt.Errorf("redirect to %s is not http(s)", req.URL)
			}
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u.Host, err)
	}
	req.Header.Set("User-Agent", "Myelin")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching media from %s: %w", u.Host, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, responseError(u.Host, resp.StatusCode, data)
	}
	return resp, nil
}
