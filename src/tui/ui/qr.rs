//! The pairing QR as a widget: the whole code, two module rows per cell
//! ('▀': foreground = top module, background = bottom module), black on
//! white whatever the terminal's theme (NO_COLOR does not apply: the colours
//! are the code itself), centred in its area. It draws only when the whole
//! code fits; the caller says what to do otherwise.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::Widget;

use crate::qr::QrMatrix;

pub struct QrWidget<'a> {
    pub matrix: &'a QrMatrix,
}

impl QrWidget<'_> {
    /// Columns and rows the code needs, quiet zone included.
    pub fn size(&self) -> (u16, u16) {
        (
            self.matrix.width() as u16,
            self.matrix.half_block_rows() as u16,
        )
    }

    pub fn fits(&self, area: Rect) -> bool {
        let (cols, rows) = self.size();
        area.width >= cols && area.height >= rows
    }
}

impl Widget for QrWidget<'_> {
    fn render(self, area: Rect, buffer: &mut Buffer) {
        if !self.fits(area) {
            return;
        }
        let (cols, rows) = self.size();
        let left = area.x + (area.width - cols) / 2;
        let shade = |dark: bool| if dark { Color::Black } else { Color::White };
        for row in 0..rows {
            for col in 0..cols {
                let (top, bottom) = self.matrix.half_block(col as usize, row as usize);
                buffer[(left + col, area.y + row)]
                    .set_symbol("▀")
                    .set_style(Style::new().fg(shade(top)).bg(shade(bottom)));
            }
        }
    }
}
