//! `curves.png`: training curves per epoch — train/val loss, validation mIoU
//! and mean Dice, learning rate — drawn with plotters and an embedded font
//! (DejaVu Sans), so no system font is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use super::state::EpochRecord;
use crate::data::io::write_rgb8_png;

const WIDTH: u32 = 1500;
const HEIGHT: u32 = 420;
pub(crate) const FONT: &str = "sans-serif";

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu font is valid"));
    });
}

/// Upper end of a y range: the largest value, padded, never 0.
fn top(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if m > 0.0 { m * 1.1 } else { 1.0 }
}

type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    y_max: f64,
    series: Vec<Series>,
    epochs: f64,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(1f64..epochs.max(2.0), 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, color, points) in series {
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// Draws the curves of `history` into `path` (PNG, written atomically).
pub fn draw(path: &Path, history: &[EpochRecord]) -> Result<(), String> {
    register_font();
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        let areas = root.split_evenly((1, 3));
        let epochs = history.last().map(|r| r.epoch as f64).unwrap_or(1.0);
        let line = |f: fn(&EpochRecord) -> f64| {
            history
                .iter()
                .map(|r| (r.epoch as f64, f(r)))
                .collect::<Vec<_>>()
        };
        let loss_top = top(history.iter().flat_map(|r| [r.train_loss, r.val_loss]));
        panel(
            &areas[0],
            "loss",
            loss_top,
            vec![
                ("train", BLUE, line(|r| r.train_loss)),
                ("validation", RED, line(|r| r.val_loss)),
            ],
            epochs,
        )?;
        panel(
            &areas[1],
            "validation scores",
            1.0,
            vec![
                ("mIoU", GREEN, line(|r| r.miou)),
                ("mean Dice", MAGENTA, line(|r| r.mean_dice)),
            ],
            epochs,
        )?;
        let lr_top = top(history.iter().map(|r| r.lr));
        panel(
            &areas[2],
            "learning rate (end of epoch)",
            lr_top,
            vec![("lr", BLACK, line(|r| r.lr))],
            epochs,
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    write_rgb8_png(path, WIDTH as usize, HEIGHT as usize, &buffer).map_err(|e| e.to_string())
}
