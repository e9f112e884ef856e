//! Polygon outlines of labelled objects, traced along pixel edges ("crack
//! following", as in GDAL's polygonize), so that a polygon's area equals
//! its pixel count exactly.
//!
//! Coordinates are pixel-corner coordinates in the image frame: pixel
//! (x, y) is the square [x, x+1] × [y, y+1], y pointing down. Each
//! 4-connected piece of an object becomes one [`Polygon`]; an object with
//! several pieces is a MultiPolygon.
//!
//! Orientation: exterior rings have positive shoelace area
//! ([`ring_area`]) computed on the raw (x, y) numbers, holes negative. Read
//! with y up, as GeoJSON readers and validators do, that is RFC 7946's rule
//! (exterior counter-clockwise, holes clockwise); drawn on screen with y
//! down the exterior appears clockwise.
//!
//! Ambiguous corners (two diagonal pixels of the object, the other two
//! not): if the two pixels belong to the same 4-connected piece the
//! outline passes between the background pixels, otherwise between the
//! object pixels. Either way every ring is simple (visits each corner
//! once); rings of different pieces, or a hole and its exterior, may touch
//! at a single corner, which OGC Simple Features allows.

use super::label::neighbours4;

/// One 4-connected piece of an object: closed rings of corner points
/// (first point == last point), collinear points removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polygon {
    pub exterior: Vec<(i64, i64)>,
    pub holes: Vec<Vec<(i64, i64)>>,
}

/// Signed shoelace area of a closed ring (positive for exteriors here).
pub fn ring_area(ring: &[(i64, i64)]) -> f64 {
    // Integer sum: exact for any image size, so areas equal pixel counts.
    let twice: i128 = ring
        .windows(2)
        .map(|w| i128::from(w[0].0) * i128::from(w[1].1) - i128::from(w[1].0) * i128::from(w[0].1))
        .sum();
    twice as f64 / 2.0
}

/// 4-connected pieces of equal nonzero labels, numbered 1.. in raster
/// order; also returns each piece's label. Explicit stack, no recursion.
fn pieces(labels: &[u32], width: usize, height: usize) -> (Vec<u32>, Vec<u32>) {
    let mut comp = vec![0u32; labels.len()];
    let mut ids = Vec::new();
    let mut stack = Vec::new();
    for start in 0..labels.len() {
        let id = labels[start];
        if id == 0 || comp[start] != 0 {
            continue;
        }
        ids.push(id);
        let c = ids.len() as u32;
        comp[start] = c;
        stack.push(start);
        while let Some(i) = stack.pop() {
            for j in neighbours4(i, width, height).into_iter().flatten() {
                if labels[j] == id && comp[j] == 0 {
                    comp[j] = c;
                    stack.push(j);
                }
            }
        }
    }
    (comp, ids)
}

/// Outlines of every object, sorted by id: `(id, polygons)`, one polygon
/// per 4-connected piece in raster order of the piece's first pixel.
pub fn outlines(labels: &[u32], width: usize, height: usize) -> Vec<(u32, Vec<Polygon>)> {
    assert_eq!(
        labels.len(),
        width * height,
        "labels length != width*height"
    );
    let (comp, ids) = pieces(labels, width, height);
    let (w, h) = (width as i64, height as i64);
    // Piece at pixel (x, y), 0 outside the image.
    let piece_at = |x: i64, y: i64| -> u32 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0
        } else {
            comp[(y * w + x) as usize]
        }
    };
    // The pixel beside the corner (cx, cy) in the quadrant (ox, oy), ±1 each.
    let quadrant = |(cx, cy): (i64, i64), ox: i64, oy: i64| (cx + (ox - 1) / 2, cy + (oy - 1) / 2);

    let mut rings: Vec<Vec<Vec<(i64, i64)>>> = vec![Vec::new(); ids.len()];
    // Bit s set: side s of the pixel is already on a traced ring.
    let mut done = vec![0u8; labels.len()];
    // Sides 0 top, 1 right, 2 bottom, 3 left: the walk's start corner
    // (offset from the pixel) and direction. The object lies on the right
    // on screen, i.e. at normal n = (-dy, dx).
    const SIDES: [((i64, i64), (i64, i64)); 4] = [
        ((0, 0), (1, 0)),
        ((1, 0), (0, 1)),
        ((1, 1), (-1, 0)),
        ((0, 1), (0, -1)),
    ];
    let side_of = |d: (i64, i64)| match d {
        (1, 0) => 0,
        (0, 1) => 1,
        (-1, 0) => 2,
        _ => 3,
    };
    for y in 0..h {
        for x in 0..w {
            let c = piece_at(x, y);
            if c == 0 {
                continue;
            }
            for (s, &((ox, oy), d0)) in SIDES.iter().enumerate() {
                // The neighbour across side s is at minus the normal.
                let across = piece_at(x + d0.1, y - d0.0);
                if across == c || done[(y * w + x) as usize] & (1 << s) != 0 {
                    continue;
                }
                let c0 = (x + ox, y + oy);
                let (mut at, mut d) = (c0, d0);
                let mut ring = Vec::new();
                loop {
                    let n = (-d.1, d.0);
                    let (px, py) = quadrant(at, d.0 + n.0, d.1 + n.1);
                    done[(py * w + px) as usize] |= 1 << side_of(d);
                    at = (at.0 + d.0, at.1 + d.1);
                    // Next direction at the new corner: turn away from the
                    // object if the pixel ahead on the far side is ours (this
                    // includes a diagonal pixel of the same piece: join),
                    // go straight if the pixel ahead on our side is ours,
                    // else turn around our pixel.
                    let far = quadrant(at, d.0 - n.0, d.1 - n.1);
                    let near = quadrant(at, d.0 + n.0, d.1 + n.1);
                    let next = if piece_at(far.0, far.1) == c {
                        (-n.0, -n.1)
                    } else if piece_at(near.0, near.1) == c {
                        d
                    } else {
                        n
                    };
                    if next != d {
                        ring.push(at);
                    }
                    d = next;
                    if at == c0 && d == d0 {
                        break;
                    }
                }
                // Start the ring at the walk's first corner when it is one.
                if ring.last() == Some(&c0) {
                    ring.rotate_right(1);
                }
                ring.push(ring[0]);
                rings[c as usize - 1].push(ring);
            }
        }
    }

    let mut by_id: Vec<(u32, Vec<Polygon>)> = Vec::new();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    // Stable sort keeps pieces of one id in raster order.
    order.sort_by_key(|&k| ids[k]);
    for k in order {
        let mut exterior = Vec::new();
        let mut holes = Vec::new();
        for ring in std::mem::take(&mut rings[k]) {
            if ring_area(&ring) > 0.0 {
                exterior = ring;
            } else {
                holes.push(ring);
            }
        }
        let polygon = Polygon { exterior, holes };
        match by_id.last_mut() {
            Some((id, polys)) if *id == ids[k] => polys.push(polygon),
            _ => by_id.push((ids[k], vec![polygon])),
        }
    }
    by_id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(rows: &[&str]) -> (Vec<u32>, usize, usize) {
        let labels = rows
            .iter()
            .flat_map(|r| r.chars().map(|ch| ch.to_digit(10).unwrap_or(0)))
            .collect();
        (labels, rows[0].len(), rows.len())
    }

    /// Signed area of a polygon: exterior minus holes.
    fn area(p: &Polygon) -> f64 {
        ring_area(&p.exterior) + p.holes.iter().map(|r| ring_area(r)).sum::<f64>()
    }

    /// Closed, no repeated corner, no collinear corner, axis-parallel steps.
    fn assert_simple(ring: &[(i64, i64)]) {
        assert!(ring.len() >= 5 && ring.first() == ring.last(), "{ring:?}");
        let open = &ring[..ring.len() - 1];
        let mut seen = open.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), open.len(), "corner visited twice: {ring:?}");
        for k in 0..open.len() {
            let (a, b, c) = (
                open[k],
                open[(k + 1) % open.len()],
                open[(k + 2) % open.len()],
            );
            assert!(a.0 == b.0 || a.1 == b.1, "diagonal step {ring:?}");
            let cross = (b.0 - a.0) * (c.1 - b.1) - (b.1 - a.1) * (c.0 - b.0);
            assert_ne!(cross, 0, "collinear corner {b:?} in {ring:?}");
        }
    }

    #[test]
    fn single_pixel() {
        let (l, w, h) = image(&["000", "010", "000"]);
        let out = outlines(&l, w, h);
        assert_eq!(out.len(), 1);
        let (id, polys) = &out[0];
        assert_eq!(*id, 1);
        assert_eq!(
            polys[0].exterior,
            vec![(1, 1), (2, 1), (2, 2), (1, 2), (1, 1)]
        );
        assert!(polys[0].holes.is_empty());
        assert_eq!(ring_area(&polys[0].exterior), 1.0);
    }

    #[test]
    fn l_shape_area_is_pixel_count() {
        let (l, w, h) = image(&["1000", "1000", "1110"]);
        let out = outlines(&l, w, h);
        let ext = &out[0].1[0].exterior;
        assert_eq!(ring_area(ext), 5.0);
        assert_eq!(ext.len(), 7, "six corners plus the closing point: {ext:?}");
        assert_simple(ext);
    }

    #[test]
    fn square_with_hole() {
        let (l, w, h) = image(&["2222", "2002", "2002", "2222"]);
        let out = outlines(&l, w, h);
        assert_eq!(out[0].0, 2);
        let p = &out[0].1[0];
        assert_eq!(out[0].1.len(), 1);
        assert_eq!(p.holes.len(), 1);
        assert_eq!(ring_area(&p.exterior), 16.0);
        assert_eq!(ring_area(&p.holes[0]), -4.0);
        assert_eq!(area(p), 12.0);
    }

    #[test]
    fn diagonal_pixels_are_two_polygons() {
        let (l, w, h) = image(&["10", "01"]);
        let out = outlines(&l, w, h);
        assert_eq!(out[0].1.len(), 2);
        for p in &out[0].1 {
            assert_eq!(ring_area(&p.exterior), 1.0);
            assert_simple(&p.exterior);
        }
    }

    #[test]
    fn diagonal_gap_in_one_piece_makes_a_touching_hole() {
        // The centre pixel is enclosed by one 4-connected piece but reaches
        // the outside only through a diagonal gap at corner (1, 1).
        let (l, w, h) = image(&["011", "101", "111"]);
        let out = outlines(&l, w, h);
        assert_eq!(out[0].1.len(), 1);
        let p = &out[0].1[0];
        assert_simple(&p.exterior);
        assert_eq!(p.holes.len(), 1);
        assert_eq!(ring_area(&p.holes[0]), -1.0);
        assert!(p.holes[0].contains(&(1, 1)) && p.exterior.contains(&(1, 1)));
        assert_eq!(area(p), 7.0);
    }

    #[test]
    fn island_in_hole_and_several_ids() {
        let (l, w, h) = image(&["11111", "10001", "10101", "10001", "11111", "03300"]);
        let out = outlines(&l, w, h);
        assert_eq!(
            out.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![1, 3]
        );
        let polys = &out[0].1;
        assert_eq!(polys.len(), 2);
        assert_eq!((area(&polys[0]), polys[0].holes.len()), (16.0, 1));
        assert_eq!((area(&polys[1]), polys[1].holes.len()), (1.0, 0));
        assert_eq!(area(&out[1].1[0]), 2.0);
    }

    /// Every ring simple, exteriors positive, holes negative, one polygon
    /// per 4-connected piece, and areas summing to each id's pixel count.
    fn check(labels: &[u32], w: usize, h: usize) {
        let out = outlines(labels, w, h);
        let (_, piece_ids) = pieces(labels, w, h);
        assert_eq!(
            out.iter().map(|(_, p)| p.len()).sum::<usize>(),
            piece_ids.len()
        );
        for (id, polys) in &out {
            let count = labels.iter().filter(|&&l| l == *id).count() as f64;
            assert_eq!(polys.iter().map(area).sum::<f64>(), count, "id {id}");
            for p in polys {
                assert!(ring_area(&p.exterior) > 0.0);
                assert_simple(&p.exterior);
                for hole in &p.holes {
                    assert!(ring_area(hole) < 0.0);
                    assert_simple(hole);
                }
            }
        }
    }

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn random_blobs_areas_match_pixel_counts() {
        let mut rng = Lcg(7);
        let (w, h) = (16usize, 14usize);
        for _ in 0..100 {
            // A 4-connected random-walk blob.
            let mut l = vec![0u32; w * h];
            let (mut x, mut y) = (w / 2, h / 2);
            for _ in 0..60 {
                l[y * w + x] = 1;
                match rng.next() % 4 {
                    0 => x = (x + 1).min(w - 1),
                    1 => x = x.saturating_sub(1),
                    2 => y = (y + 1).min(h - 1),
                    _ => y = y.saturating_sub(1),
                }
            }
            let out = outlines(&l, w, h);
            assert_eq!(out[0].1.len(), 1, "a 4-connected blob is one polygon");
            check(&l, w, h);
        }
    }

    #[test]
    fn random_noise_with_many_ambiguous_corners() {
        let mut rng = Lcg(11);
        for _ in 0..200 {
            let (w, h) = (1 + rng.next() as usize % 12, 1 + rng.next() as usize % 12);
            let l: Vec<u32> = (0..w * h).map(|_| (rng.next() % 3) as u32).collect();
            check(&l, w, h);
        }
    }
}
