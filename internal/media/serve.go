package media

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// The policy every media response carries, as Synapse sends it: content
// opened directly in a browser runs no script and loads nothing.
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; " +
	"style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// SecurityHeaders sets the headers of every media response, errors
// included.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
}

// inlineTypes are the types served with Content-Disposition: inline
// (the spec's "Serving inline content" list, which is Synapse's);
// everything else, HTML and SVG included, is an attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true, "application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true, "audio/wave": true,
	"audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

func baseType(contentType string) string {
	t, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// Inline reports whether contentType may be served inline.
func Inline(contentType string) bool { return inlineTypes[baseType(contentType)] }

// ContentDisposition is the header value for content of contentType
// named fileName (RFC 6266): a quoted filename when it is plain ASCII,
// else filename*=utf-8” with percent-encoding.
func ContentDisposition(contentType, fileName string) string {
	d := "attachment"
	if Inline(contentType) {
		d = "inline"
	}
	if fileName == "" {
		return d
	}
	if plainASCII(fileName) {
		return d + `; filename="` + fileName + `"`
	}
	return d + "; filename*=utf-8''" + rfc5987(fileName)
}

func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// rfc5987 percent-encodes everything but attr-char (RFC 5987 §3.2.1).
func rfc5987(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// servedType is the Content-Type sent for stored type t: text gets a
// charset, as Synapse adds one.
func servedType(t string) string {
	if t == "" {
		return "application/octet-stream"
	}
	if strings.HasPrefix(baseType(t), "text/") && !strings.Contains(strings.ToLower(t), "charset") {
		return t + "; charset=utf-8"
	}
	return t
}

// Serve writes c as a download (or thumbnail) response, naming it
// fileName (the stored name when empty). Range requests work when the
// body can seek. It closes c.Body.
func Serve(w http.ResponseWriter, r *http.Request, c *Content, fileName string) {
	defer c.Body.Close()
	if fileName == "" {
		fileName = c.FileName
	}
	h := w.Header()
	SecurityHeaders(h)
	h.Set("Content-Type", servedType(c.ContentType))
	h.Set("Content-Disposition", ContentDisposition(c.ContentType, fileName))
	h.Set("Cache-Control", "public, max-age=86400, s-maxage=86400")
	if rs, ok := c.Body.(io.ReadSeeker); ok {
		http.ServeContent(w, r, "", time.Time{}, rs)
		return
	}
	h.Set("Content-Length", strconv.FormatInt(c.Size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = io.Copy(w, c.Body)
	}
}

// ServeMultipart writes c as a federation media answer: multipart/mixed
// with an empty JSON metadata part, then the bytes. It closes c.Body.
func ServeMultipart(w http.ResponseWriter, c *Content) {
	defer c.Body.Close()
	mw := multipart.NewWriter(w)
	h := w.Header()
	SecurityHeaders(h)
	h.Set("Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary()}))
	w.WriteHeader(http.StatusOK)
	meta, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/json"}})
	if err != nil {
		return
	}
	_, _ = meta.Write([]byte("{}"))
	part, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {servedType(c.ContentType)},
		"Content-Disposition": {ContentDisposition(c.ContentType, c.FileName)},
	})
	if err != nil {
		return
	}
	if _, err := io.Copy(part, c.Body); err != nil {
		return
	}
	_ = mw.Close()
}

// UploadRequest reports whether r is a media upload (POST or PUT under
// /_matrix/media/*/upload), whose body the upload limit bounds rather
// than the general request limit.
func UploadRequest(r *http.Request) bool {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return false
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/_matrix/media/")
	if !ok {
		return false
	}
	_, rest, _ = strings.Cut(rest, "/")
	return rest == "upload" || strings.HasPrefix(rest, "upload/")
}
