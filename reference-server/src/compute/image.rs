//! Output images: RGB8 buffers, conversion from decoder tensors, and deterministic PNG encoding.

use anyhow::{ensure, Context};
use candle_core::{DType, Tensor};

/// An 8-bit RGB image, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes, row-major RGB.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// The image as a `[3, height, width]` f32 tensor in `[0, 1]` (the classifier's input).
    pub(crate) fn to_chw_tensor(&self, device: &candle_core::Device) -> anyhow::Result<Tensor> {
        let (w, h) = (self.width as usize, self.height as usize);
        ensure!(
            self.pixels.len() == w * h * 3,
            "image buffer has {} bytes, expected {}x{}x3",
            self.pixels.len(),
            w,
            h
        );
        let t = Tensor::from_vec(self.pixels.clone(), (h, w, 3), device)?
            .to_dtype(DType::F32)?
            .affine(1.0 / 255.0, 0.0)?
            .permute((2, 0, 1))?
            .contiguous()?;
        Ok(t)
    }
}

/// Encodes an image as PNG. Compression and filter are fixed (not adaptive defaults that may
/// change between png releases), so the same pixels always give the same bytes.
pub fn encode_png(img: &RgbImage) -> anyhow::Result<Vec<u8>> {
    ensure!(
        img.pixels.len() == img.width as usize * img.height as usize * 3,
        "image buffer has {} bytes, expected {}x{}x3",
        img.pixels.len(),
        img.width,
        img.height
    );
    let mut out = Vec::with_capacity(img.pixels.len() / 2 + 1024);
    {
        let mut enc = png::Encoder::new(&mut out, img.width, img.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_deflate_compression(png::DeflateCompression::FdeflateUltraFast);
        enc.set_filter(png::Filter::Sub);
        let mut writer = enc.write_header().context("writing PNG header")?;
        writer
            .write_image_data(&img.pixels)
            .context("writing PNG data")?;
        writer.finish().context("finishing PNG")?;
    }
    Ok(out)
}

/// Converts decoder output `[batch * frames, 3, H, W]` in `[0, 1]` into one image per batch item,
/// with the item's frames tiled left to right.
pub(crate) fn tensor_to_images(t: &Tensor, frames: usize) -> anyhow::Result<Vec<RgbImage>> {
    let (n, c, h, w) = t.dims4()?;
    ensure!(c == 3, "decoder output has {c} channels, expected 3");
    ensure!(
        frames >= 1 && n % frames == 0,
        "{n} decoded frames is not a multiple of {frames}"
    );
    // Quantise in candle (one pass), then lay out as HWC bytes.
    let bytes = t
        .affine(255.0, 0.0)?
        .round()?
        .clamp(0f32, 255f32)?
        .to_dtype(DType::U8)?
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let frame_bytes = h * w * 3;
    let row = w * 3;
    let out_w = w * frames;
    let mut images = Vec::with_capacity(n / frames);
    for item in 0..n / frames {
        let mut pixels = Vec::with_capacity(frame_bytes * frames);
        for y in 0..h {
            for f in 0..frames {
                let start = (item * frames + f) * frame_bytes + y * row;
                pixels.extend_from_slice(&bytes[start..start + row]);
            }
        }
        images.push(RgbImage {
            width: out_w as u32,
            height: h as u32,
            pixels,
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn decode(png_bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn png_round_trips_and_is_deterministic() {
        let img = RgbImage {
            width: 5,
            height: 3,
            pixels: (0..45u8).map(|i| i.wrapping_mul(37)).collect(),
        };
        let a = encode_png(&img).unwrap();
        assert_eq!(a, encode_png(&img).unwrap());
        let (info, buf) = decode(&a);
        assert_eq!((info.width, info.height), (5, 3));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(buf, img.pixels);
        let bad = RgbImage {
            width: 5,
            height: 3,
            pixels: vec![0; 4],
        };
        assert!(encode_png(&bad).is_err());
    }

    #[test]
    fn frames_tile_horizontally() {
        // Two items of two 1x2 frames; frame k is filled with value k/255.
        let vals: Vec<f32> = (0..4)
            .flat_map(|k| std::iter::repeat_n(k as f32 / 255.0, 3 * 2))
            .collect();
        let t = Tensor::from_vec(vals, (4, 3, 1, 2), &Device::Cpu).unwrap();
        let imgs = tensor_to_images(&t, 2).unwrap();
        assert_eq!(imgs.len(), 2);
        assert_eq!((imgs[0].width, imgs[0].height), (4, 1));
        assert_eq!(imgs[0].pixels, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
        assert_eq!(imgs[1].pixels[..3], [2, 2, 2]);
        let back = imgs[1].to_chw_tensor(&Device::Cpu).unwrap();
        assert_eq!(back.dims(), [3, 1, 4]);
    }
}
