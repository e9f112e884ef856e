//! Three-class learning targets from instance labels (background, object
//! interior, object boundary), the encoding of Chen et al.'s DCAN (2016) and
//! of the Data Science Bowl 2018 U-Net entries: the boundary class keeps
//! touching objects apart so that a seeded watershed (`grow.rs`) can
//! separate them again.
//!
//! Also picks a boundary width from object sizes and warns about class
//! masks passed where instance labels are expected.

/// Target classes per pixel: 0 background, 1 interior, 2 boundary. An
/// object pixel is boundary when some pixel within chessboard distance
/// `boundary` (inside the image) has another label, background included.
/// The image edge is not a boundary, so objects cut by it keep their
/// interior there; touching objects get boundary on both sides.
pub fn three_class_target(labels: &[u32], width: usize, height: usize, boundary: usize) -> Vec<u8> {
    assert_eq!(
        labels.len(),
        width * height,
        "labels length != width*height"
    );
    let mut interior: Vec<bool> = labels.iter().map(|&l| l != 0).collect();
    let mut next = interior.clone();
    // One erosion per pass: after k passes a pixel is interior iff its whole
    // (2k+1)² chessboard neighbourhood, clipped to the image, shares its
    // label. O(boundary · pixels).
    for _ in 0..boundary {
        for y in 0..height {
            for x in 0..width {
                let i = y * width + x;
                next[i] = interior[i]
                    && (y.saturating_sub(1)..(y + 2).min(height)).all(|ny| {
                        (x.saturating_sub(1)..(x + 2).min(width)).all(|nx| {
                            let j = ny * width + nx;
                            labels[j] == labels[i] && interior[j]
                        })
                    });
            }
        }
        std::mem::swap(&mut interior, &mut next);
    }
    labels
        .iter()
        .zip(&interior)
        .map(|(&l, &inner)| match (l, inner) {
            (0, _) => 0,
            (_, true) => 1,
            (_, false) => 2,
        })
        .collect()
}

/// A boundary width and a minimum object size, and why they were chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundaryChoice {
    /// Width of the boundary class in pixels.
    pub width: usize,
    /// The median of the objects' equivalent diameters 2·√(area/π).
    pub median_equivalent_diameter: f64,
    /// Objects seen.
    pub objects: usize,
    /// Why that width.
    pub reason: String,
    /// Objects smaller than this (pixels) are dropped when extracting.
    pub min_area: usize,
    /// Why that size.
    pub min_area_reason: String,
}

/// The smallest [`BoundaryChoice::min_area`] chosen.
pub const MIN_AREA_FLOOR: usize = 4;

/// Boundary width from the median equivalent diameter 2·√(area/π) of all
/// objects in `label_images` (labels, width, height): 1 px below 12 px,
/// 2 px below 40 px, else 3 px.
pub fn choose_boundary(label_images: &[(&[u32], usize, usize)]) -> BoundaryChoice {
    let mut diameters: Vec<f64> = Vec::new();
    let mut areas: Vec<u64> = Vec::new();
    for &(labels, width, height) in label_images {
        assert_eq!(
            labels.len(),
            width * height,
            "labels length != width*height"
        );
        let mut area: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        for &l in labels.iter().filter(|&&l| l != 0) {
            *area.entry(l).or_insert(0) += 1;
        }
        diameters.extend(
            area.values()
                .map(|&a| 2.0 * (a as f64 / std::f64::consts::PI).sqrt()),
        );
        areas.extend(area.values());
    }
    if diameters.is_empty() {
        return BoundaryChoice {
            width: 1,
            median_equivalent_diameter: 0.0,
            objects: 0,
            reason: "no objects in the labels: using the narrowest boundary, 1 px".to_string(),
            min_area: MIN_AREA_FLOOR,
            min_area_reason: format!("no objects in the labels: the floor, {MIN_AREA_FLOOR} px"),
        };
    }
    diameters.sort_by(f64::total_cmp);
    let k = diameters.len();
    let median = if k % 2 == 1 {
        diameters[k / 2]
    } else {
        0.5 * (diameters[k / 2 - 1] + diameters[k / 2])
    };
    let (width, why) = if median < 12.0 {
        (
            1,
            "small objects need a 1-px boundary, or little interior is left to seed them",
        )
    } else if median < 40.0 {
        (
            2,
            "a 2-px boundary keeps touching objects apart and leaves most of each object interior",
        )
    } else {
        (
            3,
            "large objects can afford a 3-px boundary, which separates touching objects more reliably",
        )
    };
    areas.sort_unstable();
    let small = areas[(areas.len() - 1) / 100];
    let min_area = ((small / 4) as usize).max(MIN_AREA_FLOOR);
    BoundaryChoice {
        width,
        median_equivalent_diameter: median,
        objects: k,
        reason: format!("median object diameter {median:.1} px over {k} objects: {why}"),
        min_area,
        min_area_reason: format!(
            "a quarter of the 1st-percentile object area ({small} px) of the training labels, at least {MIN_AREA_FLOOR} px: smaller pieces are noise"
        ),
    }
}

/// Sizes (pixels) of the 8-connected pieces of each id, in order of the
/// ids' first appearance.
fn pieces_per_id(labels: &[u32], width: usize, height: usize) -> Vec<(u32, Vec<usize>)> {
    let mut seen = vec![false; labels.len()];
    let mut index: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    let mut out: Vec<(u32, Vec<usize>)> = Vec::new();
    let mut stack = Vec::new();
    for start in 0..labels.len() {
        let id = labels[start];
        if id == 0 || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut size = 0;
        while let Some(i) = stack.pop() {
            size += 1;
            let (x, y) = (i % width, i / width);
            for ny in y.saturating_sub(1)..(y + 2).min(height) {
                for nx in x.saturating_sub(1)..(x + 2).min(width) {
                    let j = ny * width + nx;
                    if labels[j] == id && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let k = *index.entry(id).or_insert_with(|| {
            out.push((id, Vec::new()));
            out.len() - 1
        });
        out[k].1.push(size);
    }
    out
}

/// Whether class `masks` (label images with their width and height) look
/// like instance labels given to a semantic run: together at least 20
/// distinct values, nine in ten of them a single 8-connected blob. Returns
/// the count of values when they do.
pub fn looks_like_instances(masks: &[(&[u32], usize, usize)]) -> Option<usize> {
    let mut values = std::collections::HashSet::new();
    let (mut single, mut all) = (0usize, 0usize);
    for &(labels, width, height) in masks {
        for (id, sizes) in pieces_per_id(labels, width, height) {
            values.insert(id);
            all += 1;
            single += (sizes.len() == 1) as usize;
        }
    }
    (values.len() >= 20 && 10 * single >= 9 * all).then_some(values.len())
}

/// A warning when `labels` look like a class (semantic) mask rather than
/// instance labels: most ids are scattered over more than 3 separate blobs
/// (≥ 4 px each), or there are at most 3 ids, each covering over 5 % of the
/// image in several blobs. `None` when the labels look like instances.
pub fn looks_semantic(labels: &[u32], width: usize, height: usize) -> Option<String> {
    assert_eq!(
        labels.len(),
        width * height,
        "labels length != width*height"
    );
    let ids = pieces_per_id(labels, width, height);
    if ids.is_empty() {
        return None;
    }
    let blobs = |sizes: &[usize]| sizes.iter().filter(|&&s| s >= 4).count();
    let scattered: Vec<&(u32, Vec<usize>)> = ids.iter().filter(|(_, s)| blobs(s) > 3).collect();
    let hint = "each object needs its own id (label the connected components of a class mask)";
    if 2 * scattered.len() > ids.len() {
        let (id, sizes) = scattered[0];
        return Some(format!(
            "labels look like a class mask, not instance labels: {} of {} ids are split into more \
             than 3 separate blobs (id {id}: {} blobs); {hint}",
            scattered.len(),
            ids.len(),
            blobs(sizes)
        ));
    }
    let pixels = labels.len() as f64;
    let large_multi =
        |sizes: &[usize]| sizes.iter().sum::<usize>() as f64 > 0.05 * pixels && blobs(sizes) >= 2;
    if ids.len() <= 3 && ids.iter().all(|(_, s)| large_multi(s)) {
        return Some(format!(
            "labels look like a class mask, not instance labels: only {} id{}, each covering over \
             5 % of the image in several separate blobs; {hint}",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" }
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(img: &mut [u32], w: usize, id: u32, x0: usize, x1: usize, y0: usize, y1: usize) {
        for y in y0..y1 {
            img[y * w + x0..y * w + x1].fill(id);
        }
    }

    fn disc(img: &mut [u32], w: usize, id: u32, cx: f64, cy: f64, r: f64) {
        for (i, v) in img.iter_mut().enumerate() {
            if ((i % w) as f64 - cx).hypot((i / w) as f64 - cy) <= r {
                *v = id;
            }
        }
    }

    #[test]
    fn touching_squares_get_boundary_on_both_sides() {
        let w = 12;
        let mut l = vec![0u32; w * 7];
        rect(&mut l, w, 1, 1, 6, 1, 6);
        rect(&mut l, w, 2, 6, 11, 1, 6);
        let t = three_class_target(&l, w, 7, 1);
        let row = |y: usize| t[y * w..(y + 1) * w].to_vec();
        assert_eq!(row(0), vec![0; 12]);
        assert_eq!(row(1), vec![0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0]);
        assert_eq!(row(3), vec![0, 2, 1, 1, 1, 2, 2, 1, 1, 1, 2, 0]);
    }

    #[test]
    fn image_edge_is_not_a_boundary() {
        let w = 10;
        let mut l = vec![0u32; w * 10];
        rect(&mut l, w, 5, 0, 4, 0, 4);
        let t = three_class_target(&l, w, 10, 1);
        assert_eq!(t[0], 1, "corner pixel on the image edge stays interior");
        assert_eq!(t[2 * w], 1);
        assert_eq!(t[3], 2, "next to background");
        assert_eq!(t[3 * w + 3], 2);
    }

    #[test]
    fn boundary_width_two() {
        let w = 11;
        let mut l = vec![0u32; w * 11];
        rect(&mut l, w, 1, 1, 10, 1, 10);
        let count = |t: &[u8], c: u8| t.iter().filter(|&&v| v == c).count();
        let t2 = three_class_target(&l, w, 11, 2);
        assert_eq!((count(&t2, 1), count(&t2, 2)), (25, 56));
        assert!((3..8).all(|y| (3..8).all(|x| t2[y * w + x] == 1)));
        let t1 = three_class_target(&l, w, 11, 1);
        assert_eq!((count(&t1, 1), count(&t1, 2)), (49, 32));
        let t0 = three_class_target(&l, w, 11, 0);
        assert_eq!(count(&t0, 1), 81);
    }

    #[test]
    fn choose_boundary_follows_disc_size() {
        for (r, width) in [(4.0, 1), (10.0, 2), (30.0, 3)] {
            let w = 70;
            let mut l = vec![0u32; w * w];
            disc(&mut l, w, 1, 34.0, 34.0, r);
            let mut l2 = vec![0u32; w * w];
            disc(&mut l2, w, 7, 35.0, 34.0, r);
            let c = choose_boundary(&[(&l, w, w), (&l2, w, w)]);
            assert_eq!((c.width, c.objects), (width, 2), "{c:?}");
            assert!(
                (c.median_equivalent_diameter - 2.0 * r).abs() < 1.0,
                "{c:?}"
            );
            assert!(
                c.reason.starts_with("median object diameter"),
                "{}",
                c.reason
            );
        }
        let empty = vec![0u32; 16];
        let c = choose_boundary(&[(&empty, 4, 4)]);
        assert_eq!((c.width, c.objects), (1, 0));
        assert!(c.reason.contains("no objects"));
    }

    #[test]
    fn many_single_blob_values_look_like_instances() {
        let w = 60;
        let mut img = vec![0u32; w * w];
        for k in 0..25u32 {
            let (x, y) = ((k % 5) as usize * 12, (k / 5) as usize * 12);
            rect(&mut img, w, k + 1, x, x + 5, y, y + 5);
        }
        assert_eq!(looks_like_instances(&[(&img, w, w)]), Some(25));
        // Four classes in many blobs are classes.
        let classes: Vec<u32> = img
            .iter()
            .map(|&v| if v == 0 { 0 } else { v % 4 + 1 })
            .collect();
        assert_eq!(looks_like_instances(&[(&classes, w, w)]), None);
    }

    #[test]
    fn semantic_masks_are_flagged() {
        let w = 40;
        // Class mask: two classes, each scattered over 8 blobs.
        let mut classes = vec![0u32; w * w];
        for k in 0..16 {
            let (x, y) = (2 + (k % 4) * 9, 2 + (k / 4) * 9);
            rect(&mut classes, w, 1 + (k as u32 % 2), x, x + 4, y, y + 4);
        }
        assert!(looks_semantic(&classes, w, w).is_some());
        // The same blobs as instances: fine.
        let mut instances = vec![0u32; w * w];
        for k in 0..16 {
            let (x, y) = (2 + (k % 4) * 9, 2 + (k / 4) * 9);
            rect(&mut instances, w, 100 + k as u32, x, x + 4, y, y + 4);
        }
        assert_eq!(looks_semantic(&instances, w, w), None);
        // A binary mask of two big blobs.
        let mut binary = vec![0u32; w * w];
        rect(&mut binary, w, 255, 0, 15, 0, 15);
        rect(&mut binary, w, 255, 20, 40, 20, 40);
        let msg = looks_semantic(&binary, w, w).expect("flagged");
        assert!(msg.contains("only 1 id,"), "{msg}");
        // Two big single-blob objects are instances.
        rect(&mut binary, w, 9, 20, 40, 20, 40);
        assert_eq!(looks_semantic(&binary, w, w), None);
        assert_eq!(looks_semantic(&[0; 4], 2, 2), None);
    }
}
