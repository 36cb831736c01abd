// Package thumbnail makes thumbnails of JPEG, PNG, GIF (first frame) and
// WebP images in pure Go: it reads an image's size from its header before
// decoding anything (so a decompression bomb is refused without
// allocating its pixels), honours the EXIF orientation of JPEGs, detects
// animation, and scales or crops with Catmull-Rom resampling (after a
// bilinear pre-reduction of large images).
//
// It imports nothing from Myelin; package media picks the sizes and
// caches the results.
package thumbnail

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // registers the GIF decoder
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp" // registers the WebP decoder
)

// Info is what an image's header tells.
type Info struct {
	// Format is jpeg, png, gif or webp.
	Format string
	// Width and Height are as displayed (after the EXIF orientation).
	Width, Height int
	// Orientation is the EXIF orientation (1–8; 1 when none).
	Orientation int
}

// ErrUnsupported is returned for content that is not an image this
// package decodes.
var ErrUnsupported = errors.New("not a JPEG, PNG, GIF or WebP image")

// Probe reads the header of an image (head holds its first bytes; 64 KiB
// covers the headers of every supported format in practice).
func Probe(head []byte) (Info, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(head))
	if err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	switch format {
	case "jpeg", "png", "gif", "webp":
	default:
		return Info{}, ErrUnsupported
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return Info{}, fmt.Errorf("%w: empty image", ErrUnsupported)
	}
	info := Info{Format: format, Width: cfg.Width, Height: cfg.Height, Orientation: 1}
	if format == "jpeg" {
		info.Orientation = jpegOrientation(head)
		if info.Orientation >= 5 {
			info.Width, info.Height = info.Height, info.Width
		}
	}
	return info, nil
}

// ContentType is the MIME type of a thumbnail of format: JPEGs stay
// JPEG, the rest become PNG (as Synapse does).
func ContentType(format string) string {
	if format == "jpeg" {
		return "image/jpeg"
	}
	return "image/png"
}

// Fit returns the size of the thumbnail of a w×h image asked for as
// tw×th with method (scale or crop): scale fits inside the box keeping
// the aspect ratio, crop fills the box; neither ever upscales.
func Fit(w, h, tw, th int, method string) (int, int) {
	if method == "crop" {
		if w >= tw && h >= th {
			return tw, th
		}
		return min(w, tw), min(h, th)
	}
	if tw*h < th*w {
		th = max(1, tw*h/w)
	} else {
		tw = max(1, th*w/h)
	}
	if tw >= w || th >= h {
		return w, h
	}
	return tw, th
}

// Make decodes the image in data (already probed as info), makes the
// tw×th thumbnail with method and encodes it as ContentType(info.Format).
func Make(data []byte, info Info, tw, th int, method string) ([]byte, int, int, error) {
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("decoding the image: %w", err)
	}
	ow, oh := Fit(info.Width, info.Height, tw, th, method)
	swap := info.Orientation >= 5
	// Resample in the stored orientation, then turn the small result.
	rw, rh := ow, oh
	if swap {
		rw, rh = oh, ow
	}
	b := src.Bounds()
	srcRect := b
	if method == "crop" {
		srcRect = cropRect(b, rw, rh)
	}
	dst := image.NewRGBA(image.Rect(0, 0, rw, rh))
	resample(dst, src, srcRect)
	out := orient(dst, info.Orientation)
	var buf bytes.Buffer
	if info.Format == "jpeg" {
		err = jpeg.Encode(&buf, out, &jpeg.Options{Quality: 80})
	} else {
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, out)
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("encoding the thumbnail: %w", err)
	}
	return buf.Bytes(), ow, oh, nil
}

// resample scales srcRect of src into dst. Catmull-Rom's cost grows with
// the reduction factor (its support widens to filter it), so a large
// photo is first reduced to twice the target with a cheap bilinear pass:
// the second pass still filters what that one aliases, at a tenth of the
// time for a 12-megapixel photo.
func resample(dst *image.RGBA, src image.Image, srcRect image.Rectangle) {
	rw, rh := dst.Bounds().Dx(), dst.Bounds().Dy()
	if srcRect.Dx() > 4*rw && srcRect.Dy() > 4*rh {
		mid := image.NewRGBA(image.Rect(0, 0, 2*rw, 2*rh))
		draw.ApproxBiLinear.Scale(mid, mid.Bounds(), src, srcRect, draw.Src, nil)
		src, srcRect = mid, mid.Bounds()
	}
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, srcRect, draw.Src, nil)
}

// cropRect is the centred part of b with the aspect ratio rw:rh, as
// large as b allows.
func cropRect(b image.Rectangle, rw, rh int) image.Rectangle {
	w, h := b.Dx(), b.Dy()
	cw, ch := w, h
	if w*rh > h*rw {
		cw = max(1, h*rw/rh)
	} else {
		ch = max(1, w*rh/rw)
	}
	x0, y0 := b.Min.X+(w-cw)/2, b.Min.Y+(h-ch)/2
	return image.Rect(x0, y0, x0+cw, y0+ch)
}

// orient turns img (stored orientation) into its displayed orientation.
func orient(img *image.RGBA, o int) image.Image {
	if o <= 1 || o > 8 {
		return img
	}
	sw, sh := img.Bounds().Dx(), img.Bounds().Dy()
	W, H := sw, sh
	if o >= 5 {
		W, H = sh, sw
	}
	out := image.NewRGBA(image.Rect(0, 0, W, H))
	for y := 0; y < H; y++ {
		for x := 0; x < W; x++ {
			var sx, sy int
			switch o {
			case 2:
				sx, sy = W-1-x, y
			case 3:
				sx, sy = W-1-x, H-1-y
			case 4:
				sx, sy = x, H-1-y
			case 5:
				sx, sy = y, x
			case 6:
				sx, sy = y, W-1-x
			case 7:
				sx, sy = H-1-y, W-1-x
			case 8:
				sx, sy = H-1-y, x
			}
			i, j := out.PixOffset(x, y), img.PixOffset(sx, sy)
			copy(out.Pix[i:i+4], img.Pix[j:j+4])
		}
	}
	return out
}

// jpegOrientation finds the EXIF Orientation tag in a JPEG's APP1
// segment; 1 when there is none.
func jpegOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 1
	}
	i := 2
	for i+4 <= len(b) && b[i] == 0xFF {
		marker := b[i+1]
		n := int(b[i+2])<<8 | int(b[i+3])
		if marker == 0xDA || n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if marker == 0xE1 && len(seg) > 14 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var u16 func([]byte) int
	var u32 func([]byte) int
	switch string(t[:2]) {
	case "II":
		u16 = func(b []byte) int { return int(b[0]) | int(b[1])<<8 }
		u32 = func(b []byte) int { return u16(b) | u16(b[2:])<<16 }
	case "MM":
		u16 = func(b []byte) int { return int(b[0])<<8 | int(b[1]) }
		u32 = func(b []byte) int { return u16(b)<<16 | u16(b[2:]) }
	default:
		return 1
	}
	off := u32(t[4:])
	if off < 8 || off+2 > len(t) {
		return 1
	}
	count := u16(t[off:])
	for k := 0; k < count; k++ {
		e := off + 2 + 12*k
		if e+12 > len(t) {
			return 1
		}
		if u16(t[e:]) == 0x0112 {
			if o := u16(t[e+8:]); o >= 1 && o <= 8 {
				return o
			}
			return 1
		}
	}
	return 1
}

// Animated reports whether the image in r has more than one frame: a GIF
// with a second image descriptor, a PNG with an acTL chunk (APNG) or a
// WebP with the VP8X animation flag. It streams r; nothing is decoded.
func Animated(r io.Reader, format string) bool {
	br := bufio.NewReader(r)
	switch format {
	case "gif":
		return gifFrames(br) > 1
	case "png":
		return apng(br)
	case "webp":
		var h [21]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return false
		}
		return string(h[12:16]) == "VP8X" && h[20]&0x02 != 0
	}
	return false
}

func apng(br *bufio.Reader) bool {
	if _, err := br.Discard(8); err != nil {
		return false
	}
	for {
		var h [8]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return false
		}
		n := int(h[0])<<24 | int(h[1])<<16 | int(h[2])<<8 | int(h[3])
		switch string(h[4:8]) {
		case "acTL":
			return true
		case "IDAT", "IEND":
			return false
		}
		if _, err := br.Discard(n + 4); err != nil {
			return false
		}
	}
}

// gifFrames counts image descriptors, stopping at two.
func gifFrames(br *bufio.Reader) int {
	var h [13]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0
	}
	if h[10]&0x80 != 0 {
		if _, err := br.Discard(3 << (int(h[10]&7) + 1)); err != nil {
			return 0
		}
	}
	frames := 0
	for frames < 2 {
		b, err := br.ReadByte()
		if err != nil {
			return frames
		}
		switch b {
		case 0x21: // extension: label, then sub-blocks
			if _, err := br.ReadByte(); err != nil {
				return frames
			}
		case 0x2C: // image descriptor, optional local table, LZW size
			var d [9]byte
			if _, err := io.ReadFull(br, d[:]); err != nil {
				return frames
			}
			if d[8]&0x80 != 0 {
				if _, err := br.Discard(3 << (int(d[8]&7) + 1)); err != nil {
					return frames
				}
			}
			if _, err := br.ReadByte(); err != nil {
				return frames
			}
			frames++
		default: // trailer or garbage
			return frames
		}
		for { // sub-blocks
			n, err := br.ReadByte()
			if err != nil {
				return frames
			}
			if n == 0 {
				break
			}
			if _, err := br.Discard(int(n)); err != nil {
				return frames
			}
		}
	}
	return frames
}
