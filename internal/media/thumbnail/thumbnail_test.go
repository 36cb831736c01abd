package thumbnail

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"
)

// photo12MP encodes a 4000×3000 JPEG (a 12-megapixel photo).
func photo12MP(tb testing.TB) []byte {
	tb.Helper()
	img := image.NewYCbCr(image.Rect(0, 0, 4000, 3000), image.YCbCrSubsampleRatio420)
	for i := range img.Y {
		img.Y[i] = uint8(i * 7)
	}
	for i := range img.Cb {
		img.Cb[i], img.Cr[i] = uint8(i), uint8(i>>3)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func TestFit(t *testing.T) {
	for _, c := range []struct {
		w, h, tw, th int
		method       string
		ww, wh       int
	}{
		{4000, 3000, 800, 600, "scale", 800, 600},
		{1000, 500, 320, 240, "scale", 320, 160},
		{300, 200, 640, 480, "scale", 300, 200},
		{400, 300, 96, 96, "crop", 96, 96},
		{50, 200, 96, 96, "crop", 50, 96},
	} {
		if w, h := Fit(c.w, c.h, c.tw, c.th, c.method); w != c.ww || h != c.wh {
			t.Errorf("Fit(%d×%d into %d×%d %s) = %d×%d, want %d×%d", c.w, c.h, c.tw, c.th, c.method, w, h, c.ww, c.wh)
		}
	}
}

// BenchmarkThumbnail12MP makes the 800×600 scale thumbnail of a
// 12-megapixel JPEG: decode, resample, encode.
func BenchmarkThumbnail12MP(b *testing.B) {
	data := photo12MP(b)
	info, err := Probe(data[:min(len(data), 256<<10)])
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, _, _, err := Make(data, info, 800, 600, "scale"); err != nil {
			b.Fatal(err)
		}
	}
}
