//! The chart as PNG, rendered from the very SVG the console shows (resvg, pure
//! Rust: nothing to install but fonts).
//!
//! Text needs a font with CJK glyphs for the Chinese labels: Debian's
//! `fonts-wqy-microhei` or `fonts-noto-cjk`. Without one the PNG is still
//! rendered — lines, markers and Latin text with whatever fonts exist, or no
//! text at all on a machine with no fonts — and a warning says so once.
//!
//! Scanning the system fonts takes tens of milliseconds, so the database is
//! loaded once per process ([`Fonts::shared`]) and shared by every render.

use std::sync::{Arc, OnceLock};

use resvg::tiny_skia::{Pixmap, Transform};
use resvg::usvg::{self, fontdb};

use super::chart::{HEIGHT, WIDTH};
use super::EvidenceError;

/// CJK families looked for, in order of preference.
const CJK_FAMILIES: [&str; 4] = [
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
];

/// The fonts text is drawn with.
#[derive(Clone)]
pub struct Fonts {
    db: Arc<fontdb::Database>,
    /// A CJK family was found (the Chinese labels will render).
    pub cjk: Option<String>,
}

impl Fonts {
    /// The machine's fonts; the generic `sans-serif` maps to a CJK face when
    /// there is one, so every label can be drawn from one family.
    pub fn system() -> Fonts {
        let mut db = fontdb::Database::new();
        db.load_system_fonts();
        let cjk = CJK_FAMILIES
            .iter()
            .find(|name| {
                db.query(&fontdb::Query {
                    families: &[fontdb::Family::Name(name)],
                    ..Default::default()
                })
                .is_some()
            })
            .map(|s| s.to_string());
        match &cjk {
            Some(f) => db.set_sans_serif_family(f.clone()),
            None if db.is_empty() => tracing::warn!(
                "no fonts found: evidence chart PNGs will have no text (install fonts-wqy-microhei)"
            ),
            None => tracing::warn!(
                fonts = db.len(),
                "no CJK font found: Chinese labels in evidence chart PNGs will be missing (install fonts-wqy-microhei)"
            ),
        }
        Fonts {
            db: Arc::new(db),
            cjk,
        }
    }

    /// No fonts at all: shapes only. For tests of the no-font path.
    pub fn none() -> Fonts {
        Fonts {
            db: Arc::new(fontdb::Database::new()),
            cjk: None,
        }
    }

    /// The system fonts, loaded on first use and kept for the process.
    pub fn shared() -> Fonts {
        static FONTS: OnceLock<Fonts> = OnceLock::new();
        FONTS.get_or_init(Fonts::system).clone()
    }

    /// How many font faces are loaded.
    pub fn faces(&self) -> usize {
        self.db.len()
    }
}

/// Renders `svg` at `scale` × its size (2 gives a sharp print) into PNG bytes.
pub fn render_png(svg: &str, fonts: &Fonts, scale: f32) -> Result<Vec<u8>, EvidenceError> {
    let opts = usvg::Options {
        fontdb: fonts.db.clone(),
        ..Default::default()
    };
    let tree = usvg::Tree::from_str(svg, &opts).map_err(|e| EvidenceError::Png(e.to_string()))?;
    let scale = if scale.is_finite() && scale > 0.0 {
        scale.min(8.0)
    } else {
        1.0
    };
    let (w, h) = (
        (WIDTH as f32 * scale).round() as u32,
        (HEIGHT as f32 * scale).round() as u32,
    );
    let mut pixmap =
        Pixmap::new(w, h).ok_or_else(|| EvidenceError::Png(format!("no {w}×{h} canvas")))?;
    let size = tree.size();
    let fit = Transform::from_scale(w as f32 / size.width(), h as f32 / size.height());
    resvg::render(&tree, fit, &mut pixmap.as_mut());
    pixmap
        .encode_png()
        .map_err(|e| EvidenceError::Png(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// White canvas, black Chinese text and nothing else.
    fn text_only() -> String {
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}"><rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/><text x="40" y="200" font-size="64" font-family="{}" fill="#000000">限值 预警线</text></svg>"##,
            super::super::chart::FONT_FAMILY
        )
    }

    fn dark_pixels(png: &[u8], scale: u32) -> usize {
        let p = Pixmap::decode_png(png).expect("a PNG");
        assert_eq!((p.width(), p.height()), (WIDTH * scale, HEIGHT * scale));
        p.pixels().iter().filter(|c| c.red() < 128).count()
    }

    #[test]
    fn without_fonts_the_png_is_drawn_without_text() {
        let png = render_png(&text_only(), &Fonts::none(), 1.0).unwrap();
        assert_eq!(dark_pixels(&png, 1), 0);
        let png = render_png(&text_only(), &Fonts::none(), 2.0).unwrap();
        assert_eq!(dark_pixels(&png, 2), 0);
    }

    #[test]
    fn chinese_labels_render_with_a_cjk_font() {
        let fonts = Fonts::system();
        if fonts.cjk.is_none() {
            if std::env::var("PW_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("no CJK font but PW_REQUIRE_SERVICES=1: install fonts-wqy-microhei");
            }
            eprintln!("SKIPPED chinese_labels_render_with_a_cjk_font: install fonts-wqy-microhei");
            return;
        }
        let png = render_png(&text_only(), &fonts, 1.0).unwrap();
        // Eight glyphs at 64 px: thousands of dark pixels, not a stray few.
        assert!(dark_pixels(&png, 1) > 2000);
    }

    #[test]
    fn a_broken_svg_is_an_error_not_a_panic() {
        assert!(matches!(
            render_png("<svg", &Fonts::none(), 1.0),
            Err(EvidenceError::Png(_))
        ));
    }
}
