//! The TIFF reader never panics and never allocates what a header merely
//! claims: random bytes, and valid files (tiled and stripped, classic and
//! BigTIFF) with bytes changed, inserted or cut off, are read through every
//! entry point (`inspect`, every level's rows, the whole image, the mask
//! reader) and give an error or a value, never a panic; hand-made hostile
//! headers give the error that names their problem, or the right pixels.
//!
//! Every allocation of this test binary goes through [`Capped`]: one above
//! [`ALLOCATION_LIMIT`], or one that takes the live total above
//! [`LIVE_LIMIT`], is refused, so a fallible allocation reports an error and
//! an infallible one aborts the binary (the run fails).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs::File;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use tiff::encoder::{TiffEncoder, colortype};
use wsunet::raster::{
    Compression, GeoTags, Photometric, RasterSpec, Resample, TiffRows, inspect, read_tiff_mask,
    write_tiled,
};

/// The largest allocation any reading may make.
const ALLOCATION_LIMIT: usize = 256 << 20;
/// The most bytes live at once in the whole binary (tests run in parallel).
const LIVE_LIMIT: usize = 1 << 30;

static LIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The largest allocation this thread asked for since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator with the limits above.
struct Capped;

impl Capped {
    /// Counts `size` bytes in; false (and nothing counted) when over a limit.
    fn admit(size: usize) -> bool {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        if size > ALLOCATION_LIMIT {
            return false;
        }
        if LIVE.fetch_add(size, Ordering::Relaxed) + size > LIVE_LIMIT {
            LIVE.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// `allocate()`'s block of `size` bytes when admitted, uncounted again
    /// when the system allocator fails; null when refused.
    fn counted(size: usize, allocate: impl FnOnce() -> *mut u8) -> *mut u8 {
        if !Self::admit(size) {
            return std::ptr::null_mut();
        }
        let p = allocate();
        if p.is_null() {
            LIVE.fetch_sub(size, Ordering::Relaxed);
        }
        p
    }
}

// SAFETY: every call is forwarded to `System` with the caller's layout and
// pointer unchanged; a refused request returns null, which the
// `GlobalAlloc` contract allows for failure.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        Self::counted(layout.size(), || unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        Self::counted(layout.size(), || unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        if new_size > layout.size() && !Self::admit(new_size - layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `System` with `layout`; the new size is
        // the caller's, as `GlobalAlloc::realloc` requires.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            if new_size > layout.size() {
                LIVE.fetch_sub(new_size - layout.size(), Ordering::Relaxed);
            }
        } else if new_size < layout.size() {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Capped = Capped;

/// Valid seed files: a tiled BigTIFF with a pyramid and GeoTIFF tags
/// (Deflate), a tiled classic TIFF (ZSTD, 16-bit), a stripped RGB TIFF, an
/// uncompressed gray one, and the committed fixtures.
fn seeds() -> &'static Vec<Vec<u8>> {
    &seeds_and_values().0
}

/// `[C, H, W]` chunky samples as the values the reader gives: planes, each
/// sample divided by `max`.
fn planes<T: Copy + Into<f64>>(chunky: &[T], c: usize, max: f64) -> Vec<f32> {
    (0..c)
        .flat_map(|k| chunky.iter().skip(k).step_by(c))
        .map(|&v| (v.into() / max) as f32)
        .collect()
}

/// The seed files' bytes, and for those made here the values their level 0
/// reads as (`[C, H, W]`).
type Seeds = (Vec<Vec<u8>>, Vec<Option<Vec<f32>>>);

/// The seed files (see [`Seeds`]).
fn seeds_and_values() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let mut values = Vec::new();
        let spec = |w: usize, h: usize, samples: usize, compression, bigtiff| RasterSpec {
            width: w,
            height: h,
            samples,
            photometric: if samples == 3 {
                Photometric::Rgb
            } else {
                Photometric::Gray
            },
            compression,
            tile: 16,
            resample: Resample::Average,
            pyramid: true,
            geo: GeoTags {
                pixel_scale: Some(vec![1.0, 1.0, 0.0]),
                key_directory: Some(vec![1, 1, 0, 1, 1024, 0, 1, 1]),
                nodata: Some("0".into()),
                ..GeoTags::default()
            },
            resolution: Some((100.0, 100.0, 3)),
            bigtiff,
        };
        let path = dir.path().join("a.tif");
        let pixels: Vec<u8> = (0..40 * 23 * 3).map(|i| (i * 7 % 256) as u8).collect();
        write_tiled::<u8>(
            &path,
            &spec(40, 23, 3, Compression::Deflate, true),
            [Ok(pixels.clone())],
        )
        .unwrap();
        out.push(std::fs::read(&path).unwrap());
        values.push(Some(planes(&pixels, 3, 255.0)));
        let samples: Vec<u16> = (0..33 * 20).map(|i| (i * 131 % 65_536) as u16).collect();
        write_tiled::<u16>(
            &path,
            &spec(33, 20, 1, Compression::Zstd, false),
            [Ok(samples.clone())],
        )
        .unwrap();
        out.push(std::fs::read(&path).unwrap());
        values.push(Some(planes(&samples, 1, 65535.0)));
        let rgb: Vec<u8> = (0..30 * 21 * 3).map(|i| (i * 13 % 256) as u8).collect();
        {
            let mut enc = TiffEncoder::new(File::create(&path).unwrap()).unwrap();
            let mut image = enc.new_image::<colortype::RGB8>(30, 21).unwrap();
            image.rows_per_strip(4).unwrap();
            image.write_data(&rgb).unwrap();
        }
        out.push(std::fs::read(&path).unwrap());
        values.push(Some(planes(&rgb, 3, 255.0)));
        let gray: Vec<u8> = (0..25 * 25).map(|i| (i % 251) as u8).collect();
        TiffEncoder::new(File::create(&path).unwrap())
            .unwrap()
            .write_image::<colortype::Gray8>(25, 25, &gray)
            .unwrap();
        out.push(std::fs::read(&path).unwrap());
        values.push(Some(planes(&gray, 1, 255.0)));
        // The committed fixtures of other writers' layouts (JPEG, planar,
        // SubIFDs, big-endian, PackBits, LZW with a predictor).
        let fixtures =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiff");
        let mut names: Vec<_> = std::fs::read_dir(&fixtures)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "tif"))
            .collect();
        names.sort();
        out.extend(names.iter().map(|p| std::fs::read(p).unwrap()));
        values.resize(out.len(), None);
        (out, values)
    })
}

/// Every way wsunet reads a TIFF; the results are ignored, a panic fails.
fn read_everything(path: &Path) {
    if let Ok(info) = inspect(path) {
        for level in 0..info.levels.len() + 1 {
            if let Ok(mut rows) = TiffRows::open_level(&info, level) {
                let h = rows.level().height;
                let mut left = h;
                while left > 0 {
                    match rows.read_rows(7) {
                        Ok(v) if !v.is_empty() => left = left.saturating_sub(7),
                        _ => break,
                    }
                }
            }
        }
    }
    let _ = wsunet::data::read_image(path);
    let _ = read_tiff_mask(path);
}

fn check(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.tif");
    std::fs::write(&path, bytes).unwrap();
    read_everything(&path);
}

#[test]
fn seeds_read_whole() {
    for seed in seeds() {
        check(seed);
    }
}

/// Level 0 of the file `bytes`, read a few rows at a time: its values, or
/// the error's message; and the largest allocation the reading asked for.
fn read_level0(bytes: &[u8]) -> (Result<Vec<f32>, String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.tif");
    std::fs::write(&path, bytes).unwrap();
    LARGEST.with(|l| l.set(0));
    let read = || -> wsunet::Result<Vec<f32>> {
        let info = inspect(&path)?;
        let mut rows = TiffRows::open_level(&info, 0)?;
        let mut all = Vec::new();
        let (c, h, w) = (
            rows.level().channels,
            rows.level().height,
            rows.level().width,
        );
        let mut bands = Vec::new();
        let mut left = h;
        while left > 0 {
            let band = rows.read_rows(5)?;
            left -= band.len() / (c * w);
            bands.push(band);
        }
        // Bands are [C, rows, W]: gather each channel's rows.
        for k in 0..c {
            for band in &bands {
                let n = band.len() / c;
                all.extend_from_slice(&band[k * n..(k + 1) * n]);
            }
        }
        Ok(all)
    };
    let result = read().map_err(|e| e.to_string());
    (result, LARGEST.with(Cell::get))
}

#[test]
fn valid_seeds_read_back_equal_to_their_pixels() {
    let (files, values) = seeds_and_values();
    let mut checked = 0;
    for (k, (bytes, expected)) in files.iter().zip(values).enumerate() {
        let Some(expected) = expected else { continue };
        let (read, _) = read_level0(bytes);
        let read = read.unwrap_or_else(|e| panic!("seed {k}: {e}"));
        assert_eq!(&read, expected, "seed {k}");
        checked += 1;
    }
    assert_eq!(checked, 4);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_tiffs_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = seeds()[which.index(seeds().len())].clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        check(&bytes);
    }

    #[test]
    fn header_and_directory_bytes_mutated_never_panic(
        which in any::<prop::sample::Index>(),
        edits in prop::collection::vec((0usize..64, any::<u8>()), 1..6),
        tail_edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        // The header and the first directory entries decide the layout:
        // mutate them most, and the directories at the end (wsunet's writer
        // puts them there) too.
        let mut bytes = seeds()[which.index(seeds().len())].clone();
        for (at, value) in edits {
            let i = at.min(bytes.len() - 1);
            bytes[i] = value;
        }
        let n = bytes.len();
        for (at, value) in tail_edits {
            let i = n - 1 - at.index(n.min(600));
            bytes[i] = value;
        }
        check(&bytes);
    }

    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..400), big in any::<bool>()) {
        // Half of them start like a TIFF, so the parser goes past the magic.
        if bytes.len() >= 4 {
            bytes[..4].copy_from_slice(if big { b"II+\0" } else { b"II*\0" });
        }
        check(&bytes);
    }
}

/// A directory entry: tag, TIFF type (3 SHORT, 4 LONG, 16 LONG8) and values.
type Entry = (u16, u16, Vec<u64>);

/// A little-endian TIFF (BigTIFF when `big`) written by hand: `data` right
/// after the header (at byte 8, or 16 for BigTIFF), then one directory of
/// `entries` whose next-directory pointer is `next` (`Some(None)`: the
/// directory itself, a loop), values that do not fit inline after it.
fn hand_made(big: bool, data: &[u8], entries: &[Entry], next: Option<Option<u64>>) -> Vec<u8> {
    let header = if big { 16 } else { 8 };
    let ifd = (header + data.len()).next_multiple_of(2);
    let (count_len, entry_len, inline) = if big { (8, 20, 8) } else { (2, 12, 4) };
    let ifd_len = count_len + entries.len() * entry_len + if big { 8 } else { 4 };
    let mut out = Vec::new();
    if big {
        out.extend_from_slice(b"II+\0\x08\0\0\0");
        out.extend_from_slice(&(ifd as u64).to_le_bytes());
    } else {
        out.extend_from_slice(b"II*\0");
        out.extend_from_slice(&(ifd as u32).to_le_bytes());
    }
    out.extend_from_slice(data);
    out.resize(ifd, 0);
    let mut extra: Vec<u8> = Vec::new();
    let extra_at = ifd + ifd_len;
    let uint = |v: u64, bytes: usize| v.to_le_bytes()[..bytes].to_vec();
    if big {
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    } else {
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    }
    for (tag, kind, values) in entries {
        let size = match kind {
            3 => 2,
            4 => 4,
            _ => 8,
        };
        let bytes: Vec<u8> = values.iter().flat_map(|&v| uint(v, size)).collect();
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&uint(values.len() as u64, if big { 8 } else { 4 }));
        if bytes.len() <= inline {
            let mut v = bytes;
            v.resize(inline, 0);
            out.extend_from_slice(&v);
        } else {
            out.extend_from_slice(&uint((extra_at + extra.len()) as u64, inline));
            extra.extend_from_slice(&bytes);
            extra.resize(extra.len().next_multiple_of(2), 0);
        }
    }
    let next = match next {
        None => 0,
        Some(None) => ifd as u64,
        Some(Some(at)) => at,
    };
    out.extend_from_slice(&uint(next, if big { 8 } else { 4 }));
    out.extend_from_slice(&extra);
    out
}

/// The entries of a one-sample 8-bit image `w × h` with `compression`,
/// cut in strips of `rows` (`tile`: None) or tiles, whose chunks are at
/// `offsets` with `counts` bytes.
fn layout(
    (w, h): (u64, u64),
    compression: u64,
    tile: Option<u64>,
    rows: u64,
    (offsets, counts): (Vec<u64>, Vec<u64>),
    big: bool,
) -> Vec<Entry> {
    let pointer = if big { 16 } else { 4 };
    let mut e: Vec<Entry> = vec![
        (256, 4, vec![w]),
        (257, 4, vec![h]),
        (258, 3, vec![8]),
        (259, 3, vec![compression]),
        (262, 3, vec![1]),
        (277, 3, vec![1]),
    ];
    match tile {
        None => {
            e.push((273, pointer, offsets));
            e.push((278, 4, vec![rows]));
            e.push((279, pointer, counts));
        }
        Some(t) => {
            e.push((322, 4, vec![t]));
            e.push((323, 4, vec![t]));
            e.push((324, pointer, offsets));
            e.push((325, pointer, counts));
        }
    }
    e.sort_by_key(|(tag, _, _)| *tag);
    e
}

/// The error reading `bytes` gives; fails when it reads, or when reading
/// asked for more than `most` bytes at once.
fn refused(bytes: &[u8], most: usize) -> String {
    let (read, largest) = read_level0(bytes);
    assert!(largest <= most, "asked for {largest} bytes at once");
    read.expect_err("a hostile header is refused")
}

/// A 130-byte file claiming 16,777,216² pixels in one Deflate strip.
fn huge_claim() -> Vec<u8> {
    let data = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
    let side = 1 << 24;
    hand_made(
        false,
        &data,
        &layout((side, side), 8, None, side, (vec![8], vec![8]), false),
        None,
    )
}

/// A file claiming a 1,000,000 × 8 image in one Deflate strip of 300 bytes.
fn wide_claim() -> Vec<u8> {
    hand_made(
        false,
        &[0u8; 300],
        &layout((1_000_000, 8), 8, None, 8, (vec![8], vec![300]), false),
        None,
    )
}

/// A valid file of 250,000² zeros in 4,096² ZSTD tiles that all share one
/// stream: a vast image in 31 KiB, for checks made before predicting.
fn vast_zeros() -> Vec<u8> {
    let stream = zstd::encode_all(&vec![0u8; 4096 * 4096][..], 19).unwrap();
    let tiles = 250_000u64.div_ceil(4096).pow(2) as usize;
    hand_made(
        false,
        &stream,
        &layout(
            (250_000, 250_000),
            50000,
            Some(4096),
            0,
            (vec![8; tiles], vec![stream.len() as u64; tiles]),
            false,
        ),
        None,
    )
}

#[test]
fn a_vast_valid_file_is_believed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vast.tif");
    std::fs::write(&path, vast_zeros()).unwrap();
    let info = inspect(&path).unwrap();
    assert_eq!(info.levels[0].problem, None);
    // A row of its tiles is 1 GiB: over this binary's allocation limit,
    // an error (never an abort).
    let mut rows = TiffRows::open_level(&info, 0).unwrap();
    let e = rows.read_rows(2).unwrap_err().to_string();
    assert!(e.contains("a row of tiles needs 1.0 GiB"), "{e}");
}

#[test]
fn a_header_claiming_a_huge_image_is_refused_before_anything_is_allocated() {
    let bytes = huge_claim();
    assert!(bytes.len() < 300);
    let e = refused(&bytes, 1 << 20);
    assert!(e.contains("claims 16777216 × 16777216 pixels"), "{e}");
    // What `info --image` shows: the level, with the problem.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.tif");
    std::fs::write(&path, &bytes).unwrap();
    let info = inspect(&path).unwrap();
    assert!(
        info.levels[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("corrupt")
    );
}

#[test]
fn a_million_pixel_wide_strip_of_300_bytes_is_refused() {
    let e = refused(&wide_claim(), 1 << 20);
    assert!(
        e.contains("chunk 0 of 1 holds 300 bytes but its pixels need 8000000")
            && e.contains("Deflate decodes at most"),
        "{e}"
    );
}

/// The command's tests (`wsunet info`, `wsunet predict`) read these files
/// from `tests/fixtures/hostile`; they are the files built here
/// (`WSUNET_WRITE_FIXTURES=1` writes them).
#[test]
fn the_committed_hostile_files_are_the_ones_built_here() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    for (name, bytes) in [
        ("huge.tif", huge_claim()),
        ("wide.tif", wide_claim()),
        ("vast.tif", vast_zeros()),
    ] {
        let path = dir.join(name);
        if std::env::var_os("WSUNET_WRITE_FIXTURES").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{}", path.display());
    }
}

#[test]
fn a_huge_tile_of_ten_bytes_is_refused() {
    let bytes = hand_made(
        false,
        &[0u8; 10],
        &layout(
            (65_536, 65_536),
            5,
            Some(65_536),
            0,
            (vec![8], vec![10]),
            false,
        ),
        None,
    );
    let e = refused(&bytes, 1 << 20);
    assert!(
        e.contains("holds 10 bytes but its pixels need 4294967296"),
        "{e}"
    );
}

#[test]
fn chunks_past_the_end_and_overflowing_offsets_are_refused() {
    let past = hand_made(
        false,
        &[7u8; 64],
        &layout((8, 8), 1, None, 8, (vec![1 << 30], vec![64]), false),
        None,
    );
    let e = refused(&past, 1 << 20);
    assert!(e.contains("lies past the end of the file"), "{e}");
    let overflowing = hand_made(
        true,
        &[7u8; 64],
        &layout((8, 8), 1, None, 8, (vec![u64::MAX - 10], vec![64]), true),
        None,
    );
    let e = refused(&overflowing, 1 << 20);
    assert!(e.contains("lies past the end of the file"), "{e}");
    // The same files with honest offsets read.
    for big in [false, true] {
        let header = if big { 16 } else { 8 };
        let honest = hand_made(
            big,
            &[7u8; 64],
            &layout((8, 8), 1, None, 8, (vec![header], vec![64]), big),
            None,
        );
        let (read, _) = read_level0(&honest);
        assert_eq!(read.unwrap(), vec![7.0 / 255.0; 64]);
    }
}

#[test]
fn a_decompression_bomb_decodes_only_its_chunk() {
    // 32 MiB of zeros in a few KiB of ZSTD, stored as one 64 × 64 strip:
    // the chunk's 4 KiB are read, the rest is never decompressed.
    let bomb = zstd::encode_all(&vec![0u8; 32 << 20][..], 3).unwrap();
    assert!(bomb.len() < 64 << 10);
    let bytes = hand_made(
        false,
        &bomb,
        &layout(
            (64, 64),
            50000,
            None,
            64,
            (vec![8], vec![bomb.len() as u64]),
            false,
        ),
        None,
    );
    drop(bomb);
    let (read, largest) = read_level0(&bytes);
    assert_eq!(read.unwrap(), vec![0.0; 64 * 64]);
    assert!(largest < 8 << 20, "asked for {largest} bytes at once");
}

#[test]
fn directory_loops_end() {
    let pixels: Vec<u8> = (0..64).collect();
    let expected: Vec<f32> = pixels.iter().map(|&v| v as f32 / 255.0).collect();
    // The next directory is the directory itself.
    let page_loop = hand_made(
        false,
        &pixels,
        &layout((8, 8), 1, None, 8, (vec![8], vec![64]), false),
        Some(None),
    );
    let (read, _) = read_level0(&page_loop);
    match read {
        Ok(v) => assert_eq!(v, expected),
        Err(e) => assert!(e.contains("cannot read the TIFF"), "{e}"),
    }
    // A SubIFD that is the directory itself.
    let mut entries = layout((8, 8), 1, None, 8, (vec![8], vec![64]), false);
    let ifd = (8 + pixels.len()) as u64;
    entries.push((330, 4, vec![ifd]));
    let sub_loop = hand_made(false, &pixels, &entries, None);
    let (read, _) = read_level0(&sub_loop);
    assert_eq!(read.unwrap(), expected);
}

#[test]
fn compressions_wsunet_cannot_decode_are_named_with_the_fix() {
    for (code, name) in [(34712, "JPEG 2000"), (50001, "WebP"), (34887, "LERC")] {
        let bytes = hand_made(
            false,
            &[0u8; 64],
            &layout((8, 8), code, None, 8, (vec![8], vec![64]), false),
            None,
        );
        let e = refused(&bytes, 1 << 20);
        assert!(
            e.contains(&format!(
                "its compression is {name}, which wsunet cannot decode"
            )) && e.contains("gdal_translate -co COMPRESS=DEFLATE"),
            "{e}"
        );
    }
}
