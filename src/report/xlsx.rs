//! The report as an xlsx workbook, written with `rust_xlsxwriter` (no
//! hand-written zip or XML): one sheet per section of [`super::table`], numbers
//! as numbers (so the bureau can sum and sort them), outlets below 90 % and
//! enterprises to review shaded, charts as PNG images drawn by the evidence
//! charts' renderer.

use rust_xlsxwriter::{Color, Format, Image, Workbook, Worksheet};

use super::table::{sections, Block, Row, Value};
use super::{MonthlyReport, ReportError};
use crate::evidence::png::{render_png, Fonts};

/// Rows an embedded chart takes (300 px at the default row height).
const CHART_ROWS: u32 = 17;

/// A row's cell format and the same as a percentage.
struct RowFormat {
    base: Format,
    pct: Format,
}

impl RowFormat {
    fn new(base: Format) -> RowFormat {
        let pct = base.clone().set_num_format("0.0%");
        RowFormat { base, pct }
    }
}

fn write_row(
    ws: &mut Worksheet,
    r: u32,
    cells: Vec<Value>,
    format: &RowFormat,
) -> Result<(), ReportError> {
    let (base, pct) = (&format.base, &format.pct);
    for (c, v) in cells.into_iter().enumerate() {
        let c = c as u16;
        match v {
            Value::Text(s) => ws.write_string_with_format(r, c, s, base)?,
            Value::Num(n) => ws.write_number_with_format(r, c, n, base)?,
            // The fraction stays a number (sortable); only its display is %.
            Value::Pct(n) => ws.write_number_with_format(r, c, n, pct)?,
            Value::Blank => ws.write_string_with_format(r, c, "—", base)?,
        };
    }
    Ok(())
}

/// The workbook as bytes.
pub fn write(report: &MonthlyReport) -> Result<Vec<u8>, ReportError> {
    let fonts = Fonts::shared();
    let head = RowFormat::new(
        Format::new()
            .set_bold()
            .set_background_color(Color::RGB(0xEEF3FB)),
    );
    let low = RowFormat::new(Format::new().set_background_color(Color::RGB(0xFDE8E8)));
    let plain = RowFormat::new(Format::new());
    let mut wb = Workbook::new();
    for section in sections(report) {
        let ws = wb.add_worksheet();
        ws.set_name(section.sheet)?;
        ws.set_column_width(0, 30)?;
        for c in 1..8 {
            ws.set_column_width(c, 16)?;
        }
        let mut r = 0u32;
        for block in section.blocks {
            match block {
                Block::Note(n) => {
                    ws.write_string(r, 0, n)?;
                    r += 1;
                }
                Block::Chart(svg) => {
                    let png = render_png(&svg, &fonts, 1.0)
                        .map_err(|e| ReportError::Chart(e.to_string()))?;
                    ws.insert_image(r, 0, &Image::new_from_buffer(&png)?)?;
                    r += CHART_ROWS;
                }
                Block::Table { head: names, rows } => {
                    let names = names.into_iter().map(Value::from).collect();
                    write_row(ws, r, names, &head)?;
                    r += 1;
                    for Row { cells, highlight } in rows {
                        write_row(ws, r, cells, if highlight { &low } else { &plain })?;
                        r += 1;
                    }
                }
            }
            r += 1;
        }
    }
    Ok(wb.save_to_buffer()?)
}
