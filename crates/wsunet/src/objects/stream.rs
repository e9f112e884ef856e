//! Objects of an image that arrives a band of rows at a time (whole slides,
//! scenes), equal to the whole image's objects up to their numbering, with
//! objects that cross band seams kept whole.
//!
//! Seeded growth ([`grow`](super::grow)) floods each connected piece of its
//! domain on its own: a pixel's label depends only on the piece it is in. So
//! the stream labels the pieces as rows arrive (a two-pass union-find by
//! rows, the streaming form of connected-component labelling) and keeps, for
//! each piece still open, only its own pixels. When a piece has no pixel in
//! the newest row it is closed: its pixels, in raster order, are grown
//! exactly as the whole image would grow them, measured and outlined (each
//! object in its own bounding box), and its objects are handed out.
//!
//! Memory: two rows of the image, the pixels of the open pieces, and the
//! label rows not yet final as runs (rows below the top of the oldest open
//! piece). It does not hold whole rows of the input: background costs
//! nothing once its row has passed.
//!
//! Pieces: for an instance model, pixels of the object region or seeds,
//! joined when 4-adjacent, and seeds also when diagonal (seeds are
//! 8-connected; growth is 4-connected); for class labels, pixels of one
//! class, 8-connected (one object each).

use std::collections::{HashMap, VecDeque};

use super::grow::{InstanceParams, flood};
use super::label::{components, relabel_sequential, remove_small};
use super::measure::{Measurer, ObjectStats};
use super::outline::{Polygon, outlines};

/// How pixels become objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Grown from interiors ([`instances_from_probs`](super::grow::instances_from_probs)).
    Grow(InstanceParams),
    /// Each class's 8-connected pieces (class 0 is background).
    Classes,
}

/// One band of rows.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// Rows in the band.
    pub rows: usize,
    /// [`Mode::Grow`]: the background, interior and boundary probabilities,
    /// `[3, rows, width]`. [`Mode::Classes`]: unused (empty).
    pub probs: &'a [f32],
    /// [`Mode::Classes`]: each pixel's class, `[rows, width]`; and its
    /// probability in `confidence`.
    pub classes: &'a [u16],
    /// [`Mode::Classes`]: the probability of each pixel's class.
    pub confidence: &'a [f32],
    /// The input's channels, `[channels, rows, width]`, for the mean
    /// intensities.
    pub image: &'a [f32],
}

/// An object finished: its measurements, class and outline, in the whole
/// image's coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    /// Measurements (its `id` is the object's id in the label rows).
    pub stats: ObjectStats,
    /// Its class ([`Mode::Classes`]; 1 for grown objects).
    pub class: u16,
    /// Its outline (one polygon per 4-connected part).
    pub polygons: Vec<Polygon>,
}

/// A run of equal labels in a row: columns `start..end`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    start: u32,
    end: u32,
    id: u32,
}

/// Final label rows, top to bottom, held as runs of objects (background is
/// not stored); [`chunks`](LabelRows::chunks) makes them pixels a few rows
/// at a time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelRows {
    width: usize,
    rows: Vec<Vec<Run>>,
}

impl LabelRows {
    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows as pixels (`[rows, width]`), `rows` rows at a time.
    pub fn chunks(&self, rows: usize) -> impl Iterator<Item = Vec<u32>> + '_ {
        self.rows.chunks(rows.max(1)).map(|chunk| {
            let mut out = vec![0u32; chunk.len() * self.width];
            for (r, runs) in chunk.iter().enumerate() {
                let row = &mut out[r * self.width..(r + 1) * self.width];
                for run in runs {
                    row[run.start as usize..run.end as usize].fill(run.id);
                }
            }
            out
        })
    }

    /// All rows as pixels.
    pub fn to_vec(&self) -> Vec<u32> {
        self.chunks(self.rows.len()).next().unwrap_or_default()
    }
}

/// What one band (or the end) gives: objects closed, and label rows that
/// are final (continuing from the last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Objects closed, in the order they closed.
    pub objects: Vec<Closed>,
    /// Final label rows.
    pub labels: LabelRows,
}

/// An open piece's rows and columns so far.
#[derive(Debug, Clone, Copy)]
struct Extent {
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
}

impl Extent {
    fn join(self, o: Extent) -> Extent {
        Extent {
            top: self.top.min(o.top),
            bottom: self.bottom.max(o.bottom),
            left: self.left.min(o.left),
            right: self.right.max(o.right),
        }
    }
}

/// An open piece: its extent and its pixels, in the order they arrived
/// (pieces that join are appended).
#[derive(Debug)]
struct Piece {
    extent: Extent,
    /// `y * width + x` of each pixel.
    pos: Vec<u64>,
    /// Grown: 1 region, 2 seed; classes: the class.
    key: Vec<u16>,
    /// The growth's elevation ([`Mode::Grow`] only).
    elevation: Vec<f32>,
    confidence: Vec<f32>,
    /// The input's channels, pixel after pixel.
    image: Vec<f32>,
}

impl Piece {
    fn new(extent: Extent) -> Piece {
        Piece {
            extent,
            pos: Vec::new(),
            key: Vec::new(),
            elevation: Vec::new(),
            confidence: Vec::new(),
            image: Vec::new(),
        }
    }

    /// Takes in `other`'s pixels (the larger list is kept, the smaller
    /// appended, so joining costs what the smaller holds).
    fn absorb(&mut self, mut other: Piece) {
        self.extent = self.extent.join(other.extent);
        if other.pos.len() > self.pos.len() {
            std::mem::swap(&mut self.pos, &mut other.pos);
            std::mem::swap(&mut self.key, &mut other.key);
            std::mem::swap(&mut self.elevation, &mut other.elevation);
            std::mem::swap(&mut self.confidence, &mut other.confidence);
            std::mem::swap(&mut self.image, &mut other.image);
        }
        self.pos.append(&mut other.pos);
        self.key.append(&mut other.key);
        self.elevation.append(&mut other.elevation);
        self.confidence.append(&mut other.confidence);
        self.image.append(&mut other.image);
    }

    /// Puts the pixels in raster order.
    fn sort(&mut self, channels: usize) {
        let mut order: Vec<usize> = (0..self.pos.len()).collect();
        order.sort_unstable_by_key(|&i| self.pos[i]);
        let pick = |v: &[f32]| -> Vec<f32> {
            if v.is_empty() {
                return Vec::new();
            }
            order.iter().map(|&i| v[i]).collect()
        };
        self.elevation = pick(&self.elevation);
        self.confidence = pick(&self.confidence);
        self.image = order
            .iter()
            .flat_map(|&i| self.image[i * channels..(i + 1) * channels].iter().copied())
            .collect();
        self.key = order.iter().map(|&i| self.key[i]).collect();
        self.pos = order.iter().map(|&i| self.pos[i]).collect();
    }
}

/// Objects of a streamed image; see the module docs.
#[derive(Debug)]
pub struct ObjectStream {
    width: usize,
    channels: usize,
    mode: Mode,
    /// Rows received.
    received: usize,
    /// The previous and the current row: each pixel's key (0: none) and its
    /// provisional piece label.
    above_key: Vec<u16>,
    above_piece: Vec<u32>,
    row_key: Vec<u16>,
    row_piece: Vec<u32>,
    /// Union-find over provisional piece labels (index 0 unused); renumbered
    /// after each row, so it holds at most the open pieces and one row's new
    /// labels.
    parent: Vec<u32>,
    /// Open pieces by root.
    open: HashMap<u32, Piece>,
    /// Label rows not yet final, from image row `top`.
    top: usize,
    pending: VecDeque<Vec<Run>>,
    /// Ids given so far.
    next_id: u32,
}

const SEED: u16 = 2;

impl ObjectStream {
    /// A stream for an image `width` pixels wide with `channels` input
    /// channels.
    pub fn new(width: usize, channels: usize, mode: Mode) -> ObjectStream {
        ObjectStream {
            width,
            channels,
            mode,
            received: 0,
            above_key: vec![0; width],
            above_piece: vec![0; width],
            row_key: vec![0; width],
            row_piece: vec![0; width],
            parent: vec![0],
            open: HashMap::new(),
            top: 0,
            pending: VecDeque::new(),
            next_id: 0,
        }
    }

    /// Objects found so far.
    pub fn objects(&self) -> u32 {
        self.next_id
    }

    /// Pixels of open pieces held.
    pub fn held_pixels(&self) -> usize {
        self.open.values().map(|p| p.pos.len()).sum()
    }

    fn find(&mut self, mut a: u32) -> u32 {
        while self.parent[a as usize] != a {
            let up = self.parent[self.parent[a as usize] as usize];
            self.parent[a as usize] = up;
            a = up;
        }
        a
    }

    /// Joins the pieces of labels `a` and `b`; returns the root.
    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (root, child) = (ra.min(rb), ra.max(rb));
        self.parent[child as usize] = root;
        if let Some(c) = self.open.remove(&child) {
            match self.open.get_mut(&root) {
                Some(r) => r.absorb(c),
                None => {
                    self.open.insert(root, c);
                }
            }
        }
        root
    }

    /// Whether pixels with keys `a` and `b`, 4-adjacent (`diagonal`
    /// false) or diagonal, are in one piece.
    fn joined(&self, a: u16, b: u16, diagonal: bool) -> bool {
        if a == 0 || b == 0 {
            return false;
        }
        match self.mode {
            Mode::Grow(_) => !diagonal || (a == SEED && b == SEED),
            Mode::Classes => a == b,
        }
    }

    /// Takes the next band of rows.
    pub fn push(&mut self, band: Rows<'_>) -> Output {
        let (w, n) = (self.width, band.rows * self.width);
        let mut out = Output::default();
        for r in 0..band.rows {
            let y = self.received;
            let row = r * w..(r + 1) * w;
            // This row's keys.
            match self.mode {
                Mode::Grow(p) => {
                    let interior = &band.probs[n + row.start..n + row.end];
                    let boundary = &band.probs[2 * n + row.start..2 * n + row.end];
                    for x in 0..w {
                        self.row_key[x] = if interior[x] >= p.interior_threshold {
                            SEED
                        } else if interior[x] + boundary[x] >= p.region_threshold {
                            1
                        } else {
                            0
                        };
                    }
                }
                Mode::Classes => self.row_key.copy_from_slice(&band.classes[row.clone()]),
            }
            self.label_row(y, r, &band);
            self.pending.push_back(Vec::new());
            self.received += 1;
            // Pieces with no pixel in row y are complete.
            let mut closed: Vec<u32> = self
                .open
                .iter()
                .filter(|(_, p)| p.extent.bottom < y)
                .map(|(&r, _)| r)
                .collect();
            closed.sort_unstable();
            for root in closed {
                let piece = self.open.remove(&root).expect("an open piece");
                self.close(piece, &mut out);
            }
            self.renumber();
            std::mem::swap(&mut self.above_key, &mut self.row_key);
            std::mem::swap(&mut self.above_piece, &mut self.row_piece);
        }
        self.release(&mut out);
        out
    }

    /// Ends the image: every piece closes, every row is final.
    pub fn finish(&mut self) -> Output {
        let mut out = Output::default();
        let mut open: Vec<(u32, Piece)> = self.open.drain().collect();
        open.sort_unstable_by_key(|(r, _)| *r);
        for (_, piece) in open {
            self.close(piece, &mut out);
        }
        self.above_piece.fill(0);
        self.parent.truncate(1);
        self.release(&mut out);
        out
    }

    /// Provisional piece labels of row `y` (band row `r`); each pixel of a
    /// piece joins its piece's list.
    fn label_row(&mut self, y: usize, r: usize, band: &Rows<'_>) {
        let (w, n) = (self.width, band.rows * self.width);
        for x in 0..w {
            let key = self.row_key[x];
            self.row_piece[x] = 0;
            if key == 0 {
                continue;
            }
            // Earlier neighbours: left, above, above-left, above-right.
            let neighbours = [
                (x > 0).then(|| (self.row_key[x - 1], self.row_piece[x - 1], false)),
                Some((self.above_key[x], self.above_piece[x], false)),
                (x > 0).then(|| (self.above_key[x - 1], self.above_piece[x - 1], true)),
                (x + 1 < w).then(|| (self.above_key[x + 1], self.above_piece[x + 1], true)),
            ];
            let mut label = 0u32;
            for (k, piece, diagonal) in neighbours.into_iter().flatten() {
                if piece != 0 && self.joined(key, k, diagonal) {
                    label = if label == 0 {
                        self.find(piece)
                    } else {
                        self.union(label, piece)
                    };
                }
            }
            if label == 0 {
                label = self.parent.len() as u32;
                self.parent.push(label);
            }
            let here = Extent {
                top: y,
                bottom: y,
                left: x,
                right: x,
            };
            let root = self.find(label);
            let piece = self.open.entry(root).or_insert_with(|| Piece::new(here));
            piece.extent = piece.extent.join(here);
            let i = r * w + x;
            piece.pos.push((y * w + x) as u64);
            piece.key.push(key);
            match self.mode {
                Mode::Grow(_) => {
                    piece.elevation.push(band.probs[2 * n + i]);
                    piece.confidence.push(1.0 - band.probs[i]);
                }
                Mode::Classes => piece.confidence.push(band.confidence[i]),
            }
            for c in 0..self.channels {
                piece.image.push(band.image[c * n + i]);
            }
            self.row_piece[x] = root;
        }
    }

    /// After a row: the row's labels become their roots, and the open
    /// pieces (all in this row now) are numbered 1.. in their old order, so
    /// that the union-find does not grow with the image.
    fn renumber(&mut self) {
        for x in 0..self.width {
            if self.row_piece[x] != 0 {
                self.row_piece[x] = self.find(self.row_piece[x]);
            }
        }
        let mut roots: Vec<u32> = self.open.keys().copied().collect();
        roots.sort_unstable();
        let new = |old: u32| roots.binary_search(&old).expect("an open root") as u32 + 1;
        for l in self.row_piece.iter_mut().filter(|l| **l != 0) {
            *l = new(*l);
        }
        self.open = self.open.drain().map(|(r, p)| (new(r), p)).collect();
        self.parent = (0..=roots.len() as u32).collect();
    }

    /// Grows, measures and outlines a closed piece; its objects go to
    /// `out` and its labels to the pending rows.
    fn close(&mut self, mut piece: Piece, out: &mut Output) {
        piece.sort(self.channels);
        let (w, pos) = (self.width as u64, &piece.pos);
        let at = |p: u64| pos.binary_search(&p).ok();
        let (mut ids, class) = match self.mode {
            Mode::Grow(params) => {
                let seeds: Vec<bool> = piece.key.iter().map(|&k| k == SEED).collect();
                // Seeds are 8-connected: left, above, above-left, above-right.
                let (seeds, _) = components(&seeds, |i| {
                    let (p, x) = (pos[i], pos[i] % w);
                    let up = p.checked_sub(w);
                    [
                        (x > 0).then(|| at(p - 1)).flatten(),
                        up.and_then(at),
                        up.filter(|_| x > 0).and_then(|u| at(u - 1)),
                        up.filter(|_| x + 1 < w).and_then(|u| at(u + 1)),
                    ]
                });
                let region = vec![true; pos.len()];
                let mut grown = flood(&seeds, &region, &piece.elevation, |i| {
                    let (p, x) = (pos[i], pos[i] % w);
                    [
                        p.checked_sub(w).and_then(at),
                        (x > 0).then(|| at(p - 1)).flatten(),
                        (x + 1 < w).then(|| at(p + 1)).flatten(),
                        at(p + w),
                    ]
                });
                remove_small(&mut grown, params.min_area);
                (grown, 1)
            }
            Mode::Classes => (vec![1; pos.len()], piece.key[0]),
        };
        let count = relabel_sequential(&mut ids);
        let offset = self.next_id;
        for id in ids.iter_mut().filter(|id| **id != 0) {
            *id += offset;
        }
        self.next_id += count;
        // Measurements, in raster order as over the whole image.
        let mut m = Measurer::new(self.channels);
        for (i, &id) in ids.iter().enumerate().filter(|(_, id)| **id != 0) {
            let (y, x) = (pos[i] / w, pos[i] % w);
            let channels = self.channels;
            m.add(
                id,
                x as u32,
                y,
                Some(piece.confidence[i]),
                piece.image[i * channels..(i + 1) * channels]
                    .iter()
                    .copied(),
            );
            // Runs of the label rows.
            let runs = &mut self.pending[y as usize - self.top];
            match runs.last_mut() {
                Some(run) if run.end as u64 == x && run.id == id => run.end += 1,
                _ => runs.push(Run {
                    start: x as u32,
                    end: x as u32 + 1,
                    id,
                }),
            }
        }
        let stats = m.finish();
        // Each object outlined in its own bounding box.
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); count as usize];
        for (i, &id) in ids.iter().enumerate().filter(|(_, id)| **id != 0) {
            members[(id - offset - 1) as usize].push(i);
        }
        for (s, members) in stats.into_iter().zip(members) {
            let (bw, bh) = (
                (s.max_x - s.min_x + 1) as usize,
                (s.max_y - s.min_y + 1) as usize,
            );
            let mut bbox = vec![0u32; bw * bh];
            for i in members {
                let (y, x) = ((pos[i] / w) as usize, (pos[i] % w) as usize);
                bbox[(y - s.min_y as usize) * bw + x - s.min_x as usize] = s.id;
            }
            let polygons = outlines(&bbox, bw, bh)
                .into_iter()
                .flat_map(|(_, p)| p)
                .map(|p| shift(p, s.min_x as i64, s.min_y as i64))
                .collect();
            out.objects.push(Closed {
                stats: s,
                class,
                polygons,
            });
        }
    }

    /// Hands out the label rows above the oldest open piece (all rows when
    /// none is open).
    fn release(&mut self, out: &mut Output) {
        let keep_from = self
            .open
            .values()
            .map(|p| p.extent.top)
            .min()
            .unwrap_or(self.received);
        let rows = keep_from.saturating_sub(self.top);
        out.labels.width = self.width;
        for mut runs in self.pending.drain(..rows) {
            // Objects closed one after another: runs of a row in any order.
            runs.sort_unstable_by_key(|r| r.start);
            out.labels.rows.push(runs);
        }
        self.top += rows;
    }
}

/// `p` moved by `(dx, dy)`.
fn shift(p: Polygon, dx: i64, dy: i64) -> Polygon {
    let ring = |r: Vec<(i64, i64)>| r.into_iter().map(|(x, y)| (x + dx, y + dy)).collect();
    Polygon {
        exterior: ring(p.exterior),
        holes: p.holes.into_iter().map(ring).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::grow::instances_from_probs;
    use super::super::label::connected_components;
    use super::super::measure::measure;
    use super::*;

    /// A small deterministic generator (no crates).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Probabilities of many discs, touching ones and ones crossing every
    /// band seam, with noise: `[3, h, w]`.
    fn probs(h: usize, w: usize, seed: u64) -> Vec<f32> {
        let mut rng = Lcg(seed);
        let discs: Vec<(f64, f64, f64)> = (0..40)
            .map(|_| {
                (
                    rng.next() * w as f64,
                    rng.next() * h as f64,
                    3.0 + rng.next() * 9.0,
                )
            })
            .collect();
        let n = h * w;
        let mut p = vec![0f32; 3 * n];
        for i in 0..n {
            let (x, y) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
            let mut best = f64::INFINITY;
            let mut count = 0;
            for &(cx, cy, r) in &discs {
                let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt() - r;
                if d < 0.0 {
                    count += 1;
                }
                best = best.min(d);
            }
            let noise = (rng.next() as f32 - 0.5) * 0.3;
            let (interior, boundary) = if best < -2.0 && count == 1 {
                (0.8 + noise, 0.15)
            } else if best < 0.0 {
                (0.3 + noise, 0.6)
            } else {
                (0.05, 0.1 + noise.abs())
            };
            p[n + i] = interior.clamp(0.0, 1.0);
            p[2 * n + i] = boundary.clamp(0.0, 1.0 - p[n + i]);
            p[i] = 1.0 - p[n + i] - p[2 * n + i];
        }
        p
    }

    /// The stream's labels and objects for bands of the given heights.
    fn streamed(
        p: &[f32],
        image: &[f32],
        (h, w): (usize, usize),
        bands: &[usize],
        mode: Mode,
        (classes, confidence): (&[u16], &[f32]),
    ) -> (Vec<u32>, Vec<Closed>) {
        let n = h * w;
        let mut s = ObjectStream::new(w, 1, mode);
        let (mut labels, mut objects) = (Vec::new(), Vec::new());
        let (mut y, mut k) = (0, 0);
        while y < h {
            let rows = bands[k % bands.len()].min(h - y);
            k += 1;
            let cut = |v: &[f32], planes: usize| -> Vec<f32> {
                (0..planes)
                    .flat_map(|c| v[c * n + y * w..c * n + (y + rows) * w].iter().copied())
                    .collect()
            };
            let (bp, bi) = if p.is_empty() {
                (Vec::new(), cut(image, 1))
            } else {
                (cut(p, 3), cut(image, 1))
            };
            let (bc, bconf) = if classes.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                (
                    classes[y * w..(y + rows) * w].to_vec(),
                    confidence[y * w..(y + rows) * w].to_vec(),
                )
            };
            let out = s.push(Rows {
                rows,
                probs: &bp,
                classes: &bc,
                confidence: &bconf,
                image: &bi,
            });
            labels.extend(out.labels.to_vec());
            objects.extend(out.objects);
            y += rows;
        }
        let out = s.finish();
        labels.extend(out.labels.to_vec());
        objects.extend(out.objects);
        (labels, objects)
    }

    /// Whether two label images are one partition, with the map from `b`'s
    /// ids to `a`'s.
    fn same_partition(a: &[u32], b: &[u32]) -> Option<HashMap<u32, u32>> {
        let (mut ab, mut ba) = (HashMap::new(), HashMap::new());
        for (&x, &y) in a.iter().zip(b) {
            if (x == 0) != (y == 0) {
                return None;
            }
            if x == 0 {
                continue;
            }
            if *ab.entry(x).or_insert(y) != y || *ba.entry(y).or_insert(x) != x {
                return None;
            }
        }
        Some(ba)
    }

    #[test]
    fn streamed_objects_equal_the_whole_images_up_to_numbering() {
        let (h, w) = (120, 90);
        for seed in 1..4 {
            let p = probs(h, w, seed);
            let image: Vec<f32> = (0..h * w).map(|i| (i % 13) as f32 / 13.0).collect();
            let params = InstanceParams::default();
            let (whole, count) = instances_from_probs(&p, 3, w, h, &params);
            assert!(count > 10, "the test image has objects ({count})");
            let confidence: Vec<f32> = p[..h * w].iter().map(|b| 1.0 - b).collect();
            let expected = measure(&whole, w, h, 0, Some(&confidence), &[&image]);
            let mut shapes: HashMap<u32, Vec<Polygon>> =
                outlines(&whole, w, h).into_iter().collect();
            // Bands of one row, of uneven heights, and the whole image.
            for bands in [vec![1], vec![7, 3, 16, 1, 30], vec![h]] {
                let (labels, objects) =
                    streamed(&p, &image, (h, w), &bands, Mode::Grow(params), (&[], &[]));
                assert_eq!(labels.len(), h * w);
                let map = same_partition(&whole, &labels)
                    .unwrap_or_else(|| panic!("bands {bands:?}: another partition"));
                assert_eq!(objects.len(), count as usize);
                for o in &objects {
                    let id = map[&o.stats.id];
                    let e = &expected[id as usize - 1];
                    assert_eq!(
                        (o.stats.area, o.stats.min_x, o.stats.max_y),
                        (e.area, e.min_x, e.max_y)
                    );
                    assert!(
                        (o.stats.sum_x - e.sum_x).abs() < 1e-6
                            && (o.stats.sum_y - e.sum_y).abs() < 1e-6
                    );
                    assert!((o.stats.sum_prob - e.sum_prob).abs() < 1e-3);
                    assert!((o.stats.sum_intensity[0] - e.sum_intensity[0]).abs() < 1e-3);
                    assert_eq!(&o.polygons, shapes.get(&id).unwrap());
                }
            }
            shapes.clear();
        }
    }

    #[test]
    fn an_open_piece_holds_its_own_pixels_not_whole_rows() {
        // A one-pixel-wide line of object region down the left edge stays
        // open to the end; discs come and go beside it.
        let (h, w) = (200, 300);
        let n = h * w;
        let mut p = probs(h, w, 5);
        for y in 0..h {
            let i = y * w;
            (p[i], p[n + i], p[2 * n + i]) = (0.3, 0.2, 0.5);
            (p[i + 1], p[n + i + 1], p[2 * n + i + 1]) = (1.0, 0.0, 0.0);
        }
        let image = vec![0f32; n];
        let mut s = ObjectStream::new(w, 1, Mode::Grow(InstanceParams::default()));
        let mut most = 0;
        for y in (0..h).step_by(10) {
            let band: Vec<f32> = (0..3)
                .flat_map(|c| p[c * n + y * w..c * n + (y + 10) * w].iter().copied())
                .collect();
            s.push(Rows {
                rows: 10,
                probs: &band,
                classes: &[],
                confidence: &[],
                image: &image[y * w..(y + 10) * w],
            });
            most = most.max(s.held_pixels());
        }
        // The line's pixels and those of the discs crossing the newest rows;
        // the rows themselves would be 60,000.
        assert!(s.held_pixels() >= h, "the line is open");
        assert!(most < h + 12 * w, "held at most {most} pixels");
        s.finish();
        assert_eq!(s.held_pixels(), 0);
    }

    #[test]
    fn seeds_touching_only_diagonally_across_a_seam_are_one_object() {
        // Two seed pixels meeting at a corner, nothing else of an object
        // around them, on both sides of the seam between rows 1 and 2.
        let (h, w) = (4, 4);
        let n = h * w;
        let mut p = vec![0f32; 3 * n];
        p[..n].fill(1.0);
        for i in [w + 1, 2 * w + 2] {
            p[i] = 0.0;
            p[n + i] = 1.0;
        }
        let params = InstanceParams {
            min_area: 1,
            ..InstanceParams::default()
        };
        let (whole, count) = instances_from_probs(&p, 3, w, h, &params);
        assert_eq!(count, 1, "8-connected seeds are one object");
        let image = vec![0f32; n];
        let (labels, objects) = streamed(&p, &image, (h, w), &[2], Mode::Grow(params), (&[], &[]));
        assert!(same_partition(&whole, &labels).is_some());
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].polygons.len(), 2, "two 4-connected parts");
    }

    #[test]
    fn class_pieces_stream_as_connected_components() {
        let (h, w) = (50, 40);
        let mut rng = Lcg(9);
        // Blocky classes so that pieces cross seams and touch diagonally.
        let classes: Vec<u16> = (0..h * w)
            .map(|i| {
                let (x, y) = (i % w / 3, i / w / 3);
                ((x * 7 + y * 13 + (rng.next() * 1.5) as usize) % 3) as u16
            })
            .collect();
        let confidence = vec![0.75f32; h * w];
        let image = vec![0.5f32; h * w];
        let (labels, objects) = streamed(
            &[],
            &image,
            (h, w),
            &[5, 2, 9],
            Mode::Classes,
            (&classes, &confidence),
        );
        let mut expected = vec![0u32; h * w];
        let mut offset = 0;
        for c in 1..3u16 {
            let mask: Vec<bool> = classes.iter().map(|&k| k == c).collect();
            let (cc, n) = connected_components(&mask, w, h, true);
            for (e, &l) in expected.iter_mut().zip(&cc) {
                if l != 0 {
                    *e = l + offset;
                }
            }
            offset += n;
        }
        assert!(same_partition(&expected, &labels).is_some());
        assert_eq!(objects.len(), offset as usize);
        for o in &objects {
            let any = labels.iter().position(|&l| l == o.stats.id).unwrap();
            assert_eq!(o.class, classes[any]);
            assert!((o.stats.mean_prob() - 0.75).abs() < 1e-6);
        }
    }
}
