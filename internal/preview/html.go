package preview

import (
	"io"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// Limits on what a page may put into a preview; longer tags are dropped.
const (
	maxTagName  = 100
	maxTagValue = 1000
	// minImageSide is the smallest declared width and height of an <img>
	// taken as the preview image when the page names none (smaller ones
	// are icons and tracking pixels).
	minImageSide = 10
)

// parseHTML reads an HTML document (already decoded to UTF-8) and returns
// its OpenGraph tags. Without og:title it falls back to <title>, without
// og:description to <meta name="description">, and without og:image to
// the largest <img> declaring both sides above minImageSide, else the
// first <img>. Relative image URLs are resolved against base. The
// tokenizer streams, so only the tags kept are held in memory.
func parseHTML(r io.Reader, base *url.URL) map[string]any {
	og := map[string]any{}
	var (
		title, description   string
		inTitle, titleDone   bool
		bestImg, firstImg    string
		bestArea             int
		metaDescriptionFound bool
	)
	z := html.NewTokenizer(r)
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			// EOF, a read error or the size limit: keep what was parsed.
			return finish(og, base, title, description, bestImg, firstImg)
		case html.TextToken:
			if inTitle && !titleDone {
				title += string(z.Text())
			}
		case html.EndTagToken:
			if name, _ := z.TagName(); atom.Lookup(name) == atom.Title && inTitle {
				inTitle, titleDone = false, true
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch atom.Lookup(name) {
			case atom.Title:
				if !titleDone && tt == html.StartTagToken {
					inTitle = true
				}
			case atom.Meta:
				if !hasAttr {
					continue
				}
				attrs := attributes(z)
				key := attrs["property"]
				if key == "" {
					key = attrs["name"]
				}
				content, ok := attrs["content"]
				if !ok {
					continue
				}
				switch {
				case strings.HasPrefix(key, "og:"):
					if _, seen := og[key]; !seen && len(key) <= maxTagName {
						og[key] = content
					}
				case strings.EqualFold(key, "description") && !metaDescriptionFound:
					description, metaDescriptionFound = content, true
				}
			case atom.Img:
				if !hasAttr {
					continue
				}
				attrs := attributes(z)
				src := strings.TrimSpace(attrs["src"])
				if src == "" {
					continue
				}
				if firstImg == "" {
					firstImg = src
				}
				w, errW := strconv.Atoi(strings.TrimSpace(attrs["width"]))
				h, errH := strconv.Atoi(strings.TrimSpace(attrs["height"]))
				if errW == nil && errH == nil && w > minImageSide && h > minImageSide && w*h > bestArea {
					bestImg, bestArea = src, w*h
				}
			}
		}
	}
}

func attributes(z *html.Tokenizer) map[string]string {
	out := map[string]string{}
	for {
		k, v, more := z.TagAttr()
		key := strings.ToLower(string(k))
		if _, seen := out[key]; !seen {
			out[key] = string(v)
		}
		if !more {
			return out
		}
	}
}

func finish(og map[string]any, base *url.URL, title, description, bestImg, firstImg string) map[string]any {
	if _, ok := og["og:title"]; !ok {
		if t := collapse(title); t != "" {
			og["og:title"] = t
		}
	}
	if _, ok := og["og:description"]; !ok {
		if d := collapse(description); d != "" {
			og["og:description"] = d
		}
	}
	if _, ok := og["og:image"]; !ok {
		if bestImg == "" {
			bestImg = firstImg
		}
		if bestImg != "" {
			og["og:image"] = bestImg
		}
	}
	if img, ok := og["og:image"].(string); ok {
		if u, err := base.Parse(strings.TrimSpace(img)); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			og["og:image"] = u.String()
		} else {
			delete(og, "og:image")
		}
	}
	for _, k := range []string{"og:image:width", "og:image:height"} {
		if s, ok := og[k].(string); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
				og[k] = n
			} else {
				delete(og, k)
			}
		}
	}
	for k, v := range og {
		if s, ok := v.(string); ok {
			if s = strings.TrimSpace(s); s == "" || len(s) > maxTagValue {
				delete(og, k)
			} else {
				og[k] = s
			}
		}
	}
	return og
}

// collapse trims s and folds runs of whitespace into one space.
func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }
