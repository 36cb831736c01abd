package homeserver_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

func gradient(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	return img
}

func testJPEG(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withOrientation inserts an EXIF APP1 segment with the Orientation tag
// right after a JPEG's SOI marker.
func withOrientation(jpg []byte, o uint16) []byte {
	tiff := []byte("MM\x00\x2a\x00\x00\x00\x08\x00\x01")
	tiff = append(tiff, 0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, byte(o>>8), byte(o), 0, 0)
	tiff = append(tiff, 0, 0, 0, 0)
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := []byte{0xFF, 0xE1, byte((len(seg) + 2) >> 8), byte(len(seg) + 2)}
	out := append([]byte{}, jpg[:2]...)
	out = append(out, app1...)
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

func testGIF(t *testing.T, w, h, frames int) []byte {
	t.Helper()
	g := &gif.GIF{}
	for i := 0; i < frames; i++ {
		p := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White, color.RGBA{255, 0, 0, 255}})
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				p.SetColorIndex(x, y, uint8((x/10+y/10+i)%3))
			}
		}
		g.Image = append(g.Image, p)
		g.Delay = append(g.Delay, 10)
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, g); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testWebP writes a solid-colour lossless WebP: a VP8L header and five
// one-symbol prefix codes, so every pixel takes zero bits.
func testWebP(w, h int) []byte {
	var bits []bool
	put := func(v uint32, n int) {
		for i := 0; i < n; i++ {
			bits = append(bits, v>>i&1 == 1)
		}
	}
	put(0x2f, 8)
	put(uint32(w-1), 14)
	put(uint32(h-1), 14)
	put(0, 1)                                              // no alpha
	put(0, 3)                                              // version
	put(0, 1)                                              // no transform
	put(0, 1)                                              // no colour cache
	put(0, 1)                                              // no meta prefix codes
	for _, sym := range []uint32{0x80, 0x40, 0xC0, 0xFF} { // green, red, blue, alpha
		put(1, 1) // simple code
		put(0, 1) // one symbol
		put(1, 1) // 8-bit symbol
		put(sym, 8)
	}
	put(1, 1) // distance: simple, one symbol, 1-bit symbol 0
	put(0, 1)
	put(0, 1)
	put(0, 1)
	data := make([]byte, (len(bits)+7)/8+4)
	for i, b := range bits {
		if b {
			data[i/8] |= 1 << (i % 8)
		}
	}
	if len(data)%2 == 1 {
		data = append(data, 0)
	}
	var out bytes.Buffer
	out.WriteString("RIFF")
	_ = binary.Write(&out, binary.LittleEndian, uint32(4+8+len(data)))
	out.WriteString("WEBPVP8L")
	_ = binary.Write(&out, binary.LittleEndian, uint32(len(data)))
	out.Write(data)
	return out.Bytes()
}

// bombPNG is the header of a w×h RGBA PNG with a token IDAT: decoding it
// would allocate w×h×4 bytes.
func bombPNG(w, h uint32) []byte {
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&out, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		out.WriteString(typ)
		out.Write(data)
		_ = binary.Write(&out, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return out.Bytes()
}

func thumbPath(uri id.ContentURI, w, h int, method string, animated bool) string {
	p := "/_matrix/client/v1/media/thumbnail/" + uri.Homeserver + "/" + uri.FileID + "?width=" + strconv.Itoa(w) + "&height=" + strconv.Itoa(h)
	if method != "" {
		p += "&method=" + method
	}
	if animated {
		p += "&animated=true"
	}
	return p
}

// thumbSize checks a thumbnail answer and returns its decoded size.
func thumbSize(t *testing.T, what string, f fetched) (string, int, int) {
	t.Helper()
	if f.status != http.StatusOK {
		t.Fatalf("%s: %d %s %s", what, f.status, f.err.Errcode, f.err.Error)
	}
	if d := f.header.Get("Content-Disposition"); !strings.HasPrefix(d, "inline; filename=\"thumbnail.") {
		t.Errorf("%s: Content-Disposition %q", what, d)
	}
	checkMediaHeaders(t, f)
	cfg, format, err := image.DecodeConfig(bytes.NewReader(f.body))
	if err != nil {
		t.Fatalf("%s: thumbnail does not decode: %v", what, err)
	}
	if want := "image/" + format; f.header.Get("Content-Type") != want {
		t.Errorf("%s: Content-Type %q for a %s", what, f.header.Get("Content-Type"), format)
	}
	return format, cfg.Width, cfg.Height
}

func TestMediaThumbnails(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		ctx := t.Context()
		var pngBuf bytes.Buffer
		_ = png.Encode(&pngBuf, gradient(400, 300))
		inputs := []struct {
			name, contentType string
			data              []byte
			thumbFormat       string
		}{
			{"jpeg", "image/jpeg", testJPEG(t, 400, 300), "jpeg"},
			{"png", "image/png", pngBuf.Bytes(), "png"},
			{"gif", "image/gif", testGIF(t, 400, 300, 1), "png"},
			{"webp", "image/webp", testWebP(400, 300), "png"},
		}
		cases := []struct {
			w, h         int
			method       string
			wantW, wantH int
		}{
			{96, 96, "crop", 96, 96},
			{32, 32, "crop", 32, 32},
			{50, 40, "crop", 96, 96},      // nearest crop size at least as large
			{320, 240, "scale", 320, 240}, // a configured size
			{200, 100, "scale", 320, 240}, // nearest scale size reaching the request
			{300, 300, "", 400, 300},      // 640×480 would upscale: the original
			{200, 200, "crop", 320, 240},  // no crop size covers it: a scale size does
			{350, 350, "crop", 400, 300},  // nothing covers it: the original
			{1000, 900, "scale", 400, 300},
		}
		for _, in := range inputs {
			up, err := alice.UploadBytes(ctx, in.data, in.contentType)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				what := in.name + " " + strconv.Itoa(c.w) + "x" + strconv.Itoa(c.h) + " " + c.method
				format, w, h := thumbSize(t, what, mediaGet(t, srv.URL, thumbPath(up.ContentURI, c.w, c.h, c.method, false), alice.AccessToken))
				if w != c.wantW || h != c.wantH {
					t.Errorf("%s: %dx%d, want %dx%d", what, w, h, c.wantW, c.wantH)
				}
				wantFormat := in.thumbFormat
				if c.wantW == 400 {
					wantFormat = in.name // the original itself
				}
				if format != wantFormat {
					t.Errorf("%s: a %s, want %s", what, format, wantFormat)
				}
			}
			// A second request is served from the stored thumbnail.
			again := mediaGet(t, srv.URL, thumbPath(up.ContentURI, 96, 96, "crop", false), alice.AccessToken)
			if _, w, h := thumbSize(t, in.name+" again", again); w != 96 || h != 96 {
				t.Errorf("%s: cached thumbnail %dx%d", in.name, w, h)
			}
		}

		// EXIF orientation 6: a 400×200 photo is displayed 200×400.
		up, err := alice.UploadBytes(ctx, withOrientation(testJPEG(t, 400, 200), 6), "image/jpeg")
		if err != nil {
			t.Fatal(err)
		}
		if _, w, h := thumbSize(t, "rotated jpeg", mediaGet(t, srv.URL, thumbPath(up.ContentURI, 320, 240, "scale", false), alice.AccessToken)); w != 120 || h != 240 {
			t.Errorf("rotated jpeg scaled into 320×240: %dx%d, want 120x240", w, h)
		}

		// An animated GIF: animated=true gets the original, else a still.
		anim := testGIF(t, 200, 200, 3)
		up, err = alice.UploadBytes(ctx, anim, "image/gif")
		if err != nil {
			t.Fatal(err)
		}
		f := mediaGet(t, srv.URL, thumbPath(up.ContentURI, 96, 96, "crop", true), alice.AccessToken)
		if f.status != http.StatusOK || !bytes.Equal(f.body, anim) || f.header.Get("Content-Type") != "image/gif" {
			t.Errorf("animated=true on an animated GIF: %d %q, %d bytes", f.status, f.header.Get("Content-Type"), len(f.body))
		}
		if format, w, h := thumbSize(t, "still of animated gif", mediaGet(t, srv.URL, thumbPath(up.ContentURI, 96, 96, "crop", false), alice.AccessToken)); format != "png" || w != 96 || h != 96 {
			t.Errorf("still of an animated GIF: %s %dx%d", format, w, h)
		}

		// Not an image; bad parameters.
		txt, err := alice.UploadBytes(ctx, []byte("not an image"), "text/plain")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{thumbPath(txt.ContentURI, 32, 32, "crop", false), thumbPath(up.ContentURI, -1, 32, "", false),
			thumbPath(up.ContentURI, 32, 32, "stretch", false)} {
			if f := mediaGet(t, srv.URL, p, alice.AccessToken); f.status != http.StatusBadRequest {
				t.Errorf("%s: %d %s", p, f.status, f.err.Errcode)
			}
		}
	})
}

// TestMediaThumbnailBomb uploads the header of a 20,000×20,000 PNG: the
// thumbnail request is refused from the header, without allocating the
// 1.6 GB its pixels would take.
func TestMediaThumbnailBomb(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		srv := mxtest.Start(t, engine)
		alice := srv.Client("alice")
		up, err := alice.UploadBytes(t.Context(), bombPNG(20000, 20000), "image/png")
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f := mediaGet(t, srv.URL, thumbPath(up.ContentURI, 96, 96, "crop", false), alice.AccessToken)
		runtime.ReadMemStats(&after)
		if f.status != http.StatusRequestEntityTooLarge || f.err.Errcode != "M_TOO_LARGE" {
			t.Errorf("thumbnail of a 400-megapixel PNG: %d %s", f.status, f.err.Errcode)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 200<<20 {
			t.Errorf("refusing the bomb allocated %d MB", grew>>20)
		}
	})
}
