//! Connected-component labelling and label housekeeping.
//!
//! [`connected_components`] is the classic two-pass algorithm (Rosenfeld &
//! Pfaltz 1966) with a union-find table for label equivalences (Wu, Otoo &
//! Suzuki 2005): no recursion and no flood-fill stack, so any image that fits
//! in memory can be labelled.

use std::collections::HashMap;

/// Root of `l` with path halving, iterative.
fn find(parent: &mut [u32], mut l: u32) -> u32 {
    while parent[l as usize] != l {
        let grand = parent[parent[l as usize] as usize];
        parent[l as usize] = grand;
        l = grand;
    }
    l
}

/// Joins the sets of `a` and `b`; the smaller label becomes the root, so a
/// root is always the earliest provisional label of its component.
fn union(parent: &mut [u32], a: u32, b: u32) -> u32 {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
    parent[hi as usize] = lo;
    lo
}

/// The 4-neighbours of pixel `i` of a `width × height` image (above, left,
/// right, below), `None` past an edge.
pub fn neighbours4(i: usize, width: usize, height: usize) -> [Option<usize>; 4] {
    let (x, y) = (i % width, i / width);
    [
        (y > 0).then(|| i - width),
        (x > 0).then(|| i - 1),
        (x + 1 < width).then(|| i + 1),
        (y + 1 < height).then(|| i + width),
    ]
}

/// Labels the true pixels of `mask` by connectivity (4-connected, or
/// 8-connected when `eight`), numbering components 1..=n in raster order of
/// their first pixel. Returns (labels, n).
pub fn connected_components(
    mask: &[bool],
    width: usize,
    height: usize,
    eight: bool,
) -> (Vec<u32>, u32) {
    assert_eq!(mask.len(), width * height, "mask length != width*height");
    components(mask, |i| {
        let (x, y) = (i % width, i / width);
        [
            (x > 0).then(|| i - 1),
            (y > 0).then(|| i - width),
            (eight && x > 0 && y > 0).then(|| i - width - 1),
            (eight && y > 0 && x + 1 < width).then(|| i - width + 1),
        ]
    })
}

/// [`connected_components`] on any graph of pixels numbered in raster
/// order: `earlier(i)` lists pixel `i`'s neighbours that come before it (at
/// most four). A subset of an image numbered so gets the numbering it gets
/// inside the whole image, restricted to it.
pub(crate) fn components(
    mask: &[bool],
    earlier: impl Fn(usize) -> [Option<usize>; 4],
) -> (Vec<u32>, u32) {
    let mut labels = vec![0u32; mask.len()];
    // parent[0] is unused so that provisional label l sits at index l.
    let mut parent: Vec<u32> = vec![0];
    for i in 0..mask.len() {
        if !mask[i] {
            continue;
        }
        let mut label = 0u32;
        for j in earlier(i).into_iter().flatten() {
            let l = labels[j];
            if l != 0 {
                label = if label == 0 {
                    find(&mut parent, l)
                } else {
                    union(&mut parent, label, l)
                };
            }
        }
        if label == 0 {
            label = parent.len() as u32;
            parent.push(label);
        }
        labels[i] = label;
    }
    // Roots in increasing order are components in raster order of their first
    // pixel: the first pixel always opens a new provisional label, the
    // smallest of its set.
    let mut final_id = vec![0u32; parent.len()];
    let mut n = 0u32;
    for l in 1..parent.len() as u32 {
        let root = find(&mut parent, l);
        final_id[l as usize] = if root == l {
            n += 1;
            n
        } else {
            final_id[root as usize]
        };
    }
    for l in labels.iter_mut().filter(|l| **l != 0) {
        *l = final_id[*l as usize];
    }
    (labels, n)
}

/// Renumbers nonzero labels 1..=N in order of first appearance; returns N.
pub fn relabel_sequential(labels: &mut [u32]) -> u32 {
    let mut map: HashMap<u32, u32> = HashMap::new();
    let mut next = 0u32;
    for l in labels.iter_mut().filter(|l| **l != 0) {
        *l = *map.entry(*l).or_insert_with(|| {
            next += 1;
            next
        });
    }
    next
}

/// Sets objects with fewer than `min_area` pixels to 0 (the others keep
/// their ids); returns how many objects were removed.
pub fn remove_small(labels: &mut [u32], min_area: usize) -> usize {
    let mut area: HashMap<u32, usize> = HashMap::new();
    for &l in labels.iter().filter(|&&l| l != 0) {
        *area.entry(l).or_insert(0) += 1;
    }
    for l in labels.iter_mut().filter(|l| **l != 0) {
        if area[l] < min_area {
            *l = 0;
        }
    }
    area.values().filter(|&&a| a < min_area).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let m = rows
            .iter()
            .flat_map(|r| r.chars().map(|c| c == '#'))
            .collect();
        (m, rows[0].len(), rows.len())
    }

    /// Reference labelling by breadth-first flood fill.
    fn flood(mask: &[bool], w: usize, h: usize, eight: bool) -> (Vec<u32>, u32) {
        let mut out = vec![0u32; mask.len()];
        let mut n = 0;
        for s in 0..mask.len() {
            if !mask[s] || out[s] != 0 {
                continue;
            }
            n += 1;
            out[s] = n;
            let mut queue = std::collections::VecDeque::from([s]);
            while let Some(i) = queue.pop_front() {
                let (x, y) = ((i % w) as i64, (i / w) as i64);
                for (dx, dy) in [
                    (-1, -1),
                    (0, -1),
                    (1, -1),
                    (-1, 0),
                    (1, 0),
                    (-1, 1),
                    (0, 1),
                    (1, 1),
                ] {
                    if !eight && dx != 0 && dy != 0 {
                        continue;
                    }
                    let (nx, ny) = (x + dx, y + dy);
                    if nx >= 0 && ny >= 0 && nx < w as i64 && ny < h as i64 {
                        let j = ny as usize * w + nx as usize;
                        if mask[j] && out[j] == 0 {
                            out[j] = n;
                            queue.push_back(j);
                        }
                    }
                }
            }
        }
        (out, n)
    }

    #[test]
    fn two_blocks() {
        let (m, w, h) = mask(&["##...", "##..#", "....#"]);
        let (l, n) = connected_components(&m, w, h, false);
        assert_eq!(n, 2);
        assert_eq!(l, vec![1, 1, 0, 0, 0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn diagonal_pair_depends_on_connectivity() {
        let (m, w, h) = mask(&["#.", ".#"]);
        assert_eq!(connected_components(&m, w, h, false), (vec![1, 0, 0, 2], 2));
        assert_eq!(connected_components(&m, w, h, true), (vec![1, 0, 0, 1], 1));
        // The anti-diagonal needs the NE neighbour.
        let (m, w, h) = mask(&[".#", "#."]);
        assert_eq!(connected_components(&m, w, h, true), (vec![0, 1, 1, 0], 1));
    }

    #[test]
    fn u_shape_merges_in_second_pass_and_keeps_raster_order() {
        // The right arm opens provisional label 3 and only joins the U at
        // the bottom row; the middle bar (first pixel between the arms)
        // must still be object 2.
        let (m, w, h) = mask(&["#.#.#", "#.#.#", "#...#", "#####"]);
        let (l, n) = connected_components(&m, w, h, false);
        assert_eq!(n, 2);
        assert_eq!(&l[..5], &[1, 0, 2, 0, 1]);
        assert!(l[15..].iter().all(|&v| v == 1));
    }

    #[test]
    fn all_background() {
        let (l, n) = connected_components(&[false; 12], 4, 3, true);
        assert_eq!((l, n), (vec![0; 12], 0));
        assert_eq!(connected_components(&[], 0, 0, false), (vec![], 0));
    }

    #[test]
    fn matches_flood_fill_on_random_masks() {
        let mut s = 99u64;
        for _ in 0..300 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (w, h) = (1 + (s >> 40) as usize % 20, 1 + (s >> 50) as usize % 20);
            let m: Vec<bool> = (0..w * h)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (s >> 33) % 100 < 55
                })
                .collect();
            for eight in [false, true] {
                assert_eq!(
                    connected_components(&m, w, h, eight),
                    flood(&m, w, h, eight)
                );
            }
        }
    }

    #[test]
    fn long_serpentine_is_one_component() {
        // A 1000×1000 serpentine: every other row full, joined at
        // alternating ends. Deep equivalence chains, no recursion.
        let (w, h) = (1000, 1000);
        let m: Vec<bool> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                y % 2 == 0 || (y % 4 == 1 && x == w - 1) || (y % 4 == 3 && x == 0)
            })
            .collect();
        let (l, n) = connected_components(&m, w, h, false);
        assert_eq!(n, 1);
        assert_eq!(
            l.iter().filter(|&&v| v == 1).count(),
            m.iter().filter(|&&b| b).count()
        );
    }

    #[test]
    fn relabel_and_remove_small() {
        let mut l = vec![7, 7, 0, 3, 9, 3, 0, 9, 5];
        assert_eq!(relabel_sequential(&mut l), 4);
        assert_eq!(l, vec![1, 1, 0, 2, 3, 2, 0, 3, 4]);
        // Areas: 1→2, 2→2, 3→2, 4→1.
        assert_eq!(remove_small(&mut l, 2), 1);
        assert_eq!(l, vec![1, 1, 0, 2, 3, 2, 0, 3, 0]);
        assert_eq!(remove_small(&mut l, 3), 3);
        assert!(l.iter().all(|&v| v == 0));
        assert_eq!(remove_small(&mut l, 3), 0);
    }
}
