//! Objects of an image that arrives a band of rows at a time (whole slides,
//! scenes), equal to the whole image's objects up to their numbering, with
//! objects that cross band seams kept whole.
//!
//! Seeded growth ([`grow`](super::grow)) floods each connected piece of its
//! domain on its own: a pixel's label depends only on the piece it is in. So
//! the stream labels the pieces as rows arrive (a two-pass union-find by
//! rows, the streaming form of connected-component labelling), and when a
//! piece has no pixel in the newest row it is closed: its rows are cut out
//! and grown exactly as the whole image would grow them, measured and
//! outlined, and its objects are handed out. Rows that no open piece
//! reaches are final and handed out too. Memory holds the rows from the top
//! of the oldest open piece down to the newest row.
//!
//! Pieces: for an instance model, pixels of the object region or seeds,
//! joined when 4-adjacent, and seeds also when diagonal (seeds are
//! 8-connected; growth is 4-connected); for class labels, pixels of one
//! class, 8-connected (one object each).

use std::collections::HashMap;

use super::grow::{InstanceParams, seeded_growth};
use super::label::{connected_components, relabel_sequential, remove_small};
use super::measure::{ObjectStats, measure};
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

/// What one band (or the end) gives: objects closed, and label rows that
/// are final (top to bottom, `[rows, width]`, continuing from the last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Objects closed, in the order they closed.
    pub objects: Vec<Closed>,
    /// Final label rows.
    pub labels: Vec<u32>,
}

/// An open piece: its rows and columns so far.
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

/// Objects of a streamed image; see the module docs.
#[derive(Debug)]
pub struct ObjectStream {
    width: usize,
    mode: Mode,
    /// The image row of the buffers' first row.
    top: usize,
    /// Rows received.
    received: usize,
    /// Buffered rows (row-major from `top`): the piece key of each pixel
    /// (0: none; grown: 1 region, 2 seed; classes: the class), the growth's
    /// elevation, the confidence, the input's channels, provisional piece
    /// labels and the final labels.
    key: Vec<u16>,
    elevation: Vec<f32>,
    confidence: Vec<f32>,
    image: Vec<Vec<f32>>,
    piece: Vec<u32>,
    labels: Vec<u32>,
    /// Union-find over provisional piece labels (index 0 unused).
    parent: Vec<u32>,
    /// Open pieces by root.
    open: HashMap<u32, Extent>,
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
            mode,
            top: 0,
            received: 0,
            key: Vec::new(),
            elevation: Vec::new(),
            confidence: Vec::new(),
            image: vec![Vec::new(); channels],
            piece: Vec::new(),
            labels: Vec::new(),
            parent: vec![0],
            open: HashMap::new(),
            next_id: 0,
        }
    }

    /// Objects found so far.
    pub fn objects(&self) -> u32 {
        self.next_id
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
        if let Some(e) = self.open.remove(&child) {
            let joined = self.open.get(&root).map_or(e, |r| r.join(e));
            self.open.insert(root, joined);
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
        // The band's keys, elevations and confidences.
        match self.mode {
            Mode::Grow(p) => {
                let (bg, interior, boundary) = (
                    &band.probs[..n],
                    &band.probs[n..2 * n],
                    &band.probs[2 * n..3 * n],
                );
                for i in 0..n {
                    let key = if interior[i] >= p.interior_threshold {
                        SEED
                    } else if interior[i] + boundary[i] >= p.region_threshold {
                        1
                    } else {
                        0
                    };
                    self.key.push(key);
                    self.elevation.push(boundary[i]);
                    self.confidence.push(1.0 - bg[i]);
                }
            }
            Mode::Classes => {
                self.key.extend_from_slice(&band.classes[..n]);
                self.confidence.extend_from_slice(&band.confidence[..n]);
                self.elevation.resize(self.key.len(), 0.0);
            }
        }
        for (c, plane) in self.image.iter_mut().enumerate() {
            plane.extend_from_slice(&band.image[c * n..(c + 1) * n]);
        }
        self.piece.resize(self.key.len(), 0);
        self.labels.resize(self.key.len(), 0);
        let mut out = Output::default();
        for _ in 0..band.rows {
            let y = self.received;
            self.label_row(y);
            self.received += 1;
            // Pieces with no pixel in row y are complete.
            let mut closed: Vec<u32> = self
                .open
                .iter()
                .filter(|(_, e)| e.bottom < y)
                .map(|(&r, _)| r)
                .collect();
            closed.sort_unstable();
            for root in closed {
                let extent = self.open.remove(&root).expect("an open piece");
                self.close(root, extent, &mut out);
            }
        }
        self.release(self.received, &mut out);
        debug_assert_eq!(out.labels.len() % w.max(1), 0);
        out
    }

    /// Ends the image: every piece closes, every row is final.
    pub fn finish(&mut self) -> Output {
        let mut out = Output::default();
        let mut open: Vec<(u32, Extent)> = self.open.drain().collect();
        open.sort_unstable_by_key(|(r, _)| *r);
        for (root, extent) in open {
            self.close(root, extent, &mut out);
        }
        self.release(self.received, &mut out);
        out
    }

    /// Provisional piece labels of row `y` (in the buffers).
    fn label_row(&mut self, y: usize) {
        let w = self.width;
        let row = (y - self.top) * w;
        for x in 0..w {
            let p = row + x;
            let key = self.key[p];
            if key == 0 {
                continue;
            }
            let mut label = 0u32;
            let mut neighbours = [None; 4];
            if x > 0 {
                neighbours[0] = Some((p - 1, false));
            }
            if y > self.top {
                neighbours[1] = Some((p - w, false));
                if x > 0 {
                    neighbours[2] = Some((p - w - 1, true));
                }
                if x + 1 < w {
                    neighbours[3] = Some((p - w + 1, true));
                }
            }
            for (q, diagonal) in neighbours.into_iter().flatten() {
                if self.piece[q] != 0 && self.joined(key, self.key[q], diagonal) {
                    label = if label == 0 {
                        self.find(self.piece[q])
                    } else {
                        self.union(label, self.piece[q])
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
            let extent = self.open.get(&root).map_or(here, |e| e.join(here));
            self.open.insert(root, extent);
            self.piece[p] = root;
        }
    }

    /// Cuts the piece `root` out of the buffers, makes its objects, writes
    /// their ids into the label rows and adds them to `out`.
    fn close(&mut self, root: u32, e: Extent, out: &mut Output) {
        let (w, ch, cw, top) = (
            self.width,
            e.bottom - e.top + 1,
            e.right - e.left + 1,
            self.top,
        );
        let at = move |y: usize, x: usize| (y - top) * w + x;
        let mut inside = vec![false; ch * cw];
        for y in e.top..=e.bottom {
            for x in e.left..=e.right {
                let p = at(y, x);
                if self.piece[p] != 0 && self.find(self.piece[p]) == root {
                    inside[(y - e.top) * cw + x - e.left] = true;
                }
            }
        }
        let crop = |v: &[f32]| -> Vec<f32> {
            (e.top..=e.bottom)
                .flat_map(|y| v[at(y, e.left)..=at(y, e.right)].iter().copied())
                .collect()
        };
        let (mut ids, class) = match self.mode {
            Mode::Grow(params) => {
                let seeds: Vec<bool> = inside
                    .iter()
                    .enumerate()
                    .map(|(i, &inn)| {
                        let (y, x) = (e.top + i / cw, e.left + i % cw);
                        inn && self.key[at(y, x)] == SEED
                    })
                    .collect();
                let (seeds, _) = connected_components(&seeds, cw, ch, true);
                let mut grown = seeded_growth(&seeds, &inside, &crop(&self.elevation), cw, ch);
                remove_small(&mut grown, params.min_area);
                (grown, 1)
            }
            Mode::Classes => {
                let first = inside.iter().position(|&i| i).expect("a piece has pixels");
                let class = self.key[at(e.top + first / cw, e.left + first % cw)];
                (inside.iter().map(|&i| i as u32).collect(), class)
            }
        };
        let count = relabel_sequential(&mut ids);
        let offset = self.next_id;
        for id in ids.iter_mut().filter(|id| **id != 0) {
            *id += offset;
        }
        self.next_id += count;
        for (i, &id) in ids.iter().enumerate() {
            if id != 0 {
                let p = at(e.top + i / cw, e.left + i % cw);
                self.labels[p] = id;
            }
        }
        // The piece's pixels leave the union-find's view of open rows.
        for (i, &inn) in inside.iter().enumerate() {
            if inn {
                let p = at(e.top + i / cw, e.left + i % cw);
                self.piece[p] = 0;
            }
        }
        let planes: Vec<Vec<f32>> = self.image.iter().map(|plane| crop(plane)).collect();
        let planes: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
        let confidence = crop(&self.confidence);
        let stats = measure(&ids, cw, ch, e.top as u64, Some(&confidence), &planes);
        let mut shapes: HashMap<u32, Vec<Polygon>> = outlines(&ids, cw, ch).into_iter().collect();
        for mut s in stats {
            // measure counts columns from the cut's left edge.
            let dx = e.left as u32;
            s.sum_x += dx as f64 * s.area as f64;
            s.min_x += dx;
            s.max_x += dx;
            let polygons = shapes
                .remove(&s.id)
                .unwrap_or_default()
                .into_iter()
                .map(|p| shift(p, e.left as i64, e.top as i64))
                .collect();
            out.objects.push(Closed {
                stats: s,
                class,
                polygons,
            });
        }
    }

    /// Hands out the rows above the oldest open piece (all rows up to
    /// `limit` when none is open) and drops them from the buffers.
    fn release(&mut self, limit: usize, out: &mut Output) {
        let keep_from = self.open.values().map(|e| e.top).min().unwrap_or(limit);
        // Row `received - 1` is the previous row of the next one: its piece
        // labels are still needed when it holds an open piece, which
        // `keep_from` covers.
        let rows = keep_from.saturating_sub(self.top);
        if rows == 0 {
            return;
        }
        let n = rows * self.width;
        out.labels.extend(self.labels.drain(..n));
        self.key.drain(..n);
        self.elevation.drain(..n);
        self.confidence.drain(..n);
        self.piece.drain(..n);
        for plane in &mut self.image {
            plane.drain(..n);
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
            labels.extend(out.labels);
            objects.extend(out.objects);
            y += rows;
        }
        let out = s.finish();
        labels.extend(out.labels);
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
