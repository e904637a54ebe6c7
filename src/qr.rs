//! Pairing QR codes as a module matrix with its quiet zone, rendered as
//! half-block text (two module rows per text row) or as an SVG file. The TUI
//! draws from the same matrix.

use qrcode::{Color, EcLevel, QrCode};

/// Modules of white border the QR spec asks for around the code.
pub const QUIET_ZONE: usize = 4;

/// The code's modules including the quiet zone; `true` = dark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrMatrix {
    width: usize,
    dark: Vec<bool>,
}

impl QrMatrix {
    /// Encodes at EcLevel L: the payload is 200–260 bytes, and L keeps the
    /// code small enough to fit a terminal and still scan from a screen.
    pub fn encode(payload: &str) -> Result<QrMatrix, qrcode::types::QrError> {
        let code = QrCode::with_error_correction_level(payload.as_bytes(), EcLevel::L)?;
        let inner = code.width();
        let width = inner + 2 * QUIET_ZONE;
        let mut dark = vec![false; width * width];
        for (i, color) in code.to_colors().into_iter().enumerate() {
            let (x, y) = (i % inner + QUIET_ZONE, i / inner + QUIET_ZONE);
            dark[y * width + x] = color == Color::Dark;
        }
        Ok(QrMatrix { width, dark })
    }

    /// Modules per side, quiet zone included.
    pub fn width(&self) -> usize {
        self.width
    }

    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }

    /// Text rows needed for half-block rendering.
    pub fn half_block_rows(&self) -> usize {
        self.width.div_ceil(2)
    }

    /// (top dark, bottom dark) for the text cell at column `x`, row `row`.
    pub fn half_block(&self, x: usize, row: usize) -> (bool, bool) {
        (self.is_dark(x, 2 * row), self.is_dark(x, 2 * row + 1))
    }

    /// ANSI text for a terminal: every cell sets both colours explicitly
    /// (black on white), so the code scans whatever the terminal's theme.
    pub fn to_ansi(&self) -> String {
        const BLACK: u8 = 16;
        const WHITE: u8 = 231;
        let mut out = String::new();
        for row in 0..self.half_block_rows() {
            for x in 0..self.width {
                let (top, bottom) = self.half_block(x, row);
                let fg = if top { BLACK } else { WHITE };
                let bg = if bottom { BLACK } else { WHITE };
                out.push_str(&format!("\x1b[38;5;{fg};48;5;{bg}m▀"));
            }
            out.push_str("\x1b[0m\n");
        }
        out
    }

    /// A greyscale PNG, `scale` pixels per module (the old bridge answered
    /// `/sessions/start` with one as a data URL).
    pub fn to_png(&self, scale: usize) -> Vec<u8> {
        let side = self.width * scale;
        let mut pixels = Vec::with_capacity(side * side);
        for y in 0..side {
            for x in 0..side {
                pixels.push(if self.is_dark(x / scale, y / scale) {
                    0
                } else {
                    255
                });
            }
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let written = encoder
            .write_header()
            .and_then(|mut writer| writer.write_image_data(&pixels));
        written.expect("encoding to memory cannot fail");
        out
    }

    /// A standalone SVG, one unit per module.
    pub fn to_svg(&self) -> String {
        let w = self.width;
        let mut path = String::new();
        for y in 0..w {
            for x in 0..w {
                if self.is_dark(x, y) {
                    path.push_str(&format!("M{x} {y}h1v1h-1z"));
                }
            }
        }
        format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {w}\" width=\"{px}\" height=\"{px}\" shape-rendering=\"crispEdges\">\
<rect width=\"{w}\" height=\"{w}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>\n",
            px = w * 8
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = "2@Xq1Q2r3s4t5u6v7w8x9y0zAaBbCcDdEeFfGgHhIiJjKkLlMmNnOoPpQqRrSsTtUuVvWwXx,\
KOsj4HJdWQw0EK3T2OC9Vv3mNpAd5bLtT7KxZr1nH2o=,ZXhhbXBsZS1pZGVudGl0eS1rZXktYmFzZTY0LWVuY29kZWQ=,\
YWR2LXNlY3JldC1leGFtcGxlLWJhc2U2NC1lbmNvZGVkLXg=,1";

    #[test]
    fn matrix_has_a_white_quiet_zone() {
        let m = QrMatrix::encode(PAYLOAD).unwrap();
        for i in 0..m.width() {
            for q in 0..QUIET_ZONE {
                assert!(!m.is_dark(i, q) && !m.is_dark(q, i));
                assert!(!m.is_dark(i, m.width() - 1 - q) && !m.is_dark(m.width() - 1 - q, i));
            }
        }
        // The finder pattern's corner module sits right inside the zone.
        assert!(m.is_dark(QUIET_ZONE, QUIET_ZONE));
    }

    #[test]
    fn a_pairing_payload_fits_a_terminal() {
        let m = QrMatrix::encode(PAYLOAD).unwrap();
        assert!(m.width() <= 65, "width {}", m.width());
        assert!(m.half_block_rows() <= 33);
    }

    #[test]
    fn ansi_rows_have_one_cell_per_module() {
        let m = QrMatrix::encode(PAYLOAD).unwrap();
        let text = m.to_ansi();
        let first = text.lines().next().unwrap();
        assert_eq!(first.matches('▀').count(), m.width());
        assert_eq!(text.lines().count(), m.half_block_rows());
    }

    #[test]
    fn png_is_a_png_of_the_scaled_size() {
        let m = QrMatrix::encode(PAYLOAD).unwrap();
        let png = m.to_png(4);
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        assert_eq!(reader.info().width as usize, m.width() * 4);
    }

    #[test]
    fn svg_draws_every_dark_module() {
        let m = QrMatrix::encode(PAYLOAD).unwrap();
        let dark = (0..m.width())
            .flat_map(|y| (0..m.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| m.is_dark(x, y))
            .count();
        assert_eq!(m.to_svg().matches("h1v1h-1z").count(), dark);
    }
}
