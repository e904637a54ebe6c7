//! Reading QR codes the way a phone's camera would: off what a terminal
//! shows (text with ANSI colours: a tmux capture with `-e`, or our own
//! stderr), or off a PNG image.

use base64::Engine as _;

/// Reads a QR code off a captured screen the way a phone camera would: each
/// `▀` cell is two modules, its foreground the top one and its background
/// the bottom one; black is dark, everything else light.
pub fn qr_from_screen(capture: &str) -> Option<String> {
    let rows: Vec<Vec<(bool, bool)>> = capture.lines().map(cells_of_line).collect();
    let width = rows.iter().map(Vec::len).max()?;
    const SCALE: usize = 4;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(
        width * SCALE,
        rows.len() * 2 * SCALE,
        |x, y| {
            let (cx, cy) = (x / SCALE, y / SCALE);
            let (top, bottom) = rows[cy / 2].get(cx).copied().unwrap_or((false, false));
            let dark = if cy % 2 == 0 { top } else { bottom };
            if dark { 0 } else { 255 }
        },
    );
    let grids = image.detect_grids();
    grids.first()?.decode().ok().map(|(_, content)| content)
}

/// (top dark, bottom dark) for each cell of one captured line.
fn cells_of_line(line: &str) -> Vec<(bool, bool)> {
    let mut cells = Vec::new();
    let (mut fg, mut bg) = (None::<u16>, None::<u16>);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            let mut params = String::new();
            for p in chars.by_ref() {
                if p.is_ascii_alphabetic() {
                    if p == 'm' {
                        apply_sgr(&params, &mut fg, &mut bg);
                    }
                    break;
                }
                params.push(p);
            }
            continue;
        }
        let is_black = |color: Option<u16>| matches!(color, Some(0) | Some(16));
        cells.push(match c {
            '▀' => (is_black(fg), is_black(bg)),
            '▄' => (is_black(bg), is_black(fg)),
            '█' => (is_black(fg), is_black(fg)),
            _ => (is_black(bg), is_black(bg)),
        });
    }
    cells
}

/// Follows SGR colour changes: 30–37/40–47, 90–97/100–107, 38;5;n/48;5;n,
/// 39/49 and 0 as defaults.
fn apply_sgr(params: &str, fg: &mut Option<u16>, bg: &mut Option<u16>) {
    let codes: Vec<u16> = params.split(';').map(|p| p.parse().unwrap_or(0)).collect();
    let mut i = 0;
    while i < codes.len() {
        match codes[i] {
            0 => (*fg, *bg) = (None, None),
            c @ 30..=37 => *fg = Some(c - 30),
            c @ 90..=97 => *fg = Some(c - 90 + 8),
            39 => *fg = None,
            c @ 40..=47 => *bg = Some(c - 40),
            c @ 100..=107 => *bg = Some(c - 100 + 8),
            49 => *bg = None,
            38 | 48 if codes.get(i + 1) == Some(&5) => {
                let color = codes.get(i + 2).copied();
                if codes[i] == 38 {
                    *fg = color
                } else {
                    *bg = color
                }
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
}

/// A QR payload as given, or read back from a PNG data URL the way a phone's
/// camera reads the screen.
pub fn qr_payload(qr: &str) -> Result<String, String> {
    let Some(png) = qr.strip_prefix("data:image/png;base64,") else {
        return Ok(qr.to_string());
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png)
        .map_err(|e| format!("QR data URL: {e}"))?;
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .map_err(|e| format!("QR image: {e}"))?;
    let mut pixels = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader
        .next_frame(&mut pixels)
        .map_err(|e| format!("QR image: {e}"))?;
    let channels = info.color_type.samples();
    let (width, height) = (info.width as usize, info.height as usize);
    let row = info.line_size;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
        pixels[y * row + x * channels]
    });
    let grids = image.detect_grids();
    let grid = grids.first().ok_or("no QR code found in the image")?;
    let (_, content) = grid.decode().map_err(|e| format!("QR decode: {e}"))?;
    Ok(content)
}
