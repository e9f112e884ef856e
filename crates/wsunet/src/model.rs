//! `WsResUNet`: the WS+GroupNorm residual U-Net of the seed, and its config.
//!
//! U-Net (Ronneberger et al., arXiv:1505.04597) with a residual encoder of
//! weight-standardized blocks; the exact contract is the project's
//! `WSRESUNET.md`.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layers::{
    Norm, Standardization, Up, UpConfig, WsGnAct, WsGnActConfig, WsResBlock, WsResBlockConfig,
    resize_bilinear,
};
use crate::ops::conv2d;

pub use crate::geometry::MIN_INPUT_SIZE;

/// Configuration of a [`WsResUNet`]; serialized as JSON for model files.
///
/// In JSON every field but `num_classes` may be left out (it takes the
/// default below), and an unknown field is an error, so a typo is caught
/// rather than silently ignored.
///
/// # Example
///
/// ```
/// use wsunet::WsResUNetConfig;
///
/// let config = WsResUNetConfig::new(4);
/// assert_eq!(config.widths, vec![32, 64, 128, 256, 512]);
/// assert!(config.validate().is_ok());
/// assert!(WsResUNetConfig::new(0).validate().is_err());
/// let from_json = WsResUNetConfig::from_json(r#"{"num_classes": 4}"#).unwrap();
/// assert_eq!(from_json, config);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsResUNetConfig {
    /// Segmentation classes (output channels of the head).
    pub num_classes: usize,
    /// Input image channels. Default 3.
    #[serde(default = "defaults::in_channels")]
    pub in_channels: usize,
    /// Channels of the stem and the four stages: `[w0, w1, w2, w3, w4]`.
    /// Default `[32, 64, 128, 256, 512]`.
    #[serde(default = "defaults::widths")]
    pub widths: Vec<usize>,
    /// Residual blocks in each of the four stages. Default `[1, 1, 1, 1]`.
    #[serde(default = "defaults::depths")]
    pub depths: Vec<usize>,
    /// The normalization after every convolution: `group` (the seed's),
    /// `batch`, `instance` or `none`. Default `group`.
    #[serde(default)]
    pub norm: Norm,
    /// Starting GroupNorm group count, lowered per layer to divide its width.
    /// Default 32.
    #[serde(default = "defaults::groups")]
    pub groups: usize,
    /// How every WsConv2d standardizes its kernels (`none`: plain
    /// convolutions). Default `seed`.
    #[serde(default)]
    pub standardization: Standardization,
    /// Eps of the standardization; `None` means its default
    /// ([`Standardization::default_eps`]).
    #[serde(default)]
    pub eps: Option<f64>,
}

mod defaults {
    pub fn in_channels() -> usize {
        3
    }
    pub fn widths() -> Vec<usize> {
        vec![32, 64, 128, 256, 512]
    }
    pub fn depths() -> Vec<usize> {
        vec![1, 1, 1, 1]
    }
    pub fn groups() -> usize {
        crate::layers::DEFAULT_GROUPS
    }
}

impl Config for WsResUNetConfig {}

impl WsResUNetConfig {
    /// The spec's default network for `num_classes` classes.
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            in_channels: defaults::in_channels(),
            widths: defaults::widths(),
            depths: defaults::depths(),
            norm: Norm::default(),
            groups: defaults::groups(),
            standardization: Standardization::default(),
            eps: None,
        }
    }

    /// Sets `num_classes`.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Sets `in_channels`.
    pub fn with_in_channels(mut self, in_channels: usize) -> Self {
        self.in_channels = in_channels;
        self
    }

    /// Sets `widths`.
    pub fn with_widths(mut self, widths: Vec<usize>) -> Self {
        self.widths = widths;
        self
    }

    /// Sets `depths`.
    pub fn with_depths(mut self, depths: Vec<usize>) -> Self {
        self.depths = depths;
        self
    }

    /// Sets `norm`.
    pub fn with_norm(mut self, norm: Norm) -> Self {
        self.norm = norm;
        self
    }

    /// Sets `groups`.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets `standardization`.
    pub fn with_standardization(mut self, standardization: Standardization) -> Self {
        self.standardization = standardization;
        self
    }

    /// Sets `eps` (`None`: the standardization's default).
    pub fn with_eps(mut self, eps: Option<f64>) -> Self {
        self.eps = eps;
        self
    }

    /// Parses a JSON config, naming the line and column of a mistake.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|error| Error::Json { path: None, error })
    }

    /// Reads a JSON config file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        crate::fs::read_json(path)
    }
}

/// A norm and whether the kernels are standardized: the variants the seed's
/// claim is measured with (`wsunet study`, `--variant`).
///
/// | name | standardization | norm |
/// |---|---|---|
/// | `ws-gn` | seed | group (the seed's model) |
/// | `gn` | none | group |
/// | `ws-bn` | seed | batch |
/// | `bn` | none | batch |
/// | `ws-none` | seed | none |
/// | `plain` | none | none |
/// | `ws-in` | seed | instance (nnU-Net's norm) |
/// | `in` | none | instance |
///
/// # Example
///
/// ```
/// use wsunet::{Variant, WsResUNetConfig};
///
/// let v: Variant = "ws-bn".parse().unwrap();
/// assert_eq!(WsResUNetConfig::new(2).with_variant(v).variant_name(), "ws-bn");
/// assert!("bn-ws".parse::<Variant>().unwrap_err().contains("ws-gn, gn, ws-bn"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Variant {
    /// Whether the convolutions are weight-standardized.
    pub ws: bool,
    /// The norm after each convolution.
    pub norm: Norm,
}

impl Variant {
    /// Every variant, in the table's order.
    pub const ALL: [Variant; 8] = [
        Variant::new(true, Norm::Group),
        Variant::new(false, Norm::Group),
        Variant::new(true, Norm::Batch),
        Variant::new(false, Norm::Batch),
        Variant::new(true, Norm::None),
        Variant::new(false, Norm::None),
        Variant::new(true, Norm::Instance),
        Variant::new(false, Norm::Instance),
    ];

    /// A variant.
    pub const fn new(ws: bool, norm: Norm) -> Self {
        Variant { ws, norm }
    }

    /// Its name: `ws-gn`, `gn`, `ws-bn`, `bn`, `ws-none`, `plain`, `ws-in`
    /// or `in`.
    pub fn name(self) -> String {
        let norm = match self.norm {
            Norm::Group => "gn",
            Norm::Batch => "bn",
            Norm::None => "none",
            Norm::Instance => "in",
        };
        match (self.ws, self.norm) {
            (true, _) => format!("ws-{norm}"),
            (false, Norm::None) => "plain".into(),
            (false, _) => norm.into(),
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl std::str::FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let names: Vec<String> = Variant::ALL.iter().map(|v| v.name()).collect();
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown variant `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// One row of [`WsResUNetConfig::layout`]: a named part of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// State-dict prefix of the part (`stem`, `stage1`, … `head`).
    pub name: &'static str,
    /// Blocks in the part.
    pub blocks: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Total downsampling factor of the part's output relative to the input.
    pub stride: usize,
    /// Output height and width for the input size given to `layout`.
    pub size: [usize; 2],
}

/// Output length of a `k`-kernel, stride-2 convolution padded by `k/2`.
fn down2(len: usize) -> usize {
    (len - 1) / 2 + 1
}

impl WsResUNetConfig {
    /// Checks that the network can be built, naming the field to fix.
    pub fn validate(&self) -> Result<()> {
        let fail = |field: &str, msg: String| Err(Error::model(field, msg));
        if self.num_classes == 0 {
            return fail(
                "num_classes",
                "num_classes is 0; a segmentation model needs at least 1 class".into(),
            );
        }
        if self.in_channels == 0 {
            return fail(
                "in_channels",
                "in_channels is 0; images need at least 1 channel".into(),
            );
        }
        if self.widths.len() != 5 {
            return fail(
                "widths",
                format!(
                    "widths has {} entries {:?}; it needs 5 (stem and four stages), e.g. [32, 64, 128, 256, 512]",
                    self.widths.len(),
                    self.widths
                ),
            );
        }
        if let Some(i) = self.widths.iter().position(|&w| w == 0) {
            return fail(
                "widths",
                format!(
                    "widths[{i}] is 0 in {:?}; every width must be at least 1",
                    self.widths
                ),
            );
        }
        if self.depths.len() != 4 {
            return fail(
                "depths",
                format!(
                    "depths has {} entries {:?}; it needs 4 (one per stage), e.g. [1, 1, 1, 1]",
                    self.depths.len(),
                    self.depths
                ),
            );
        }
        if let Some(i) = self.depths.iter().position(|&d| d == 0) {
            return fail(
                "depths",
                format!(
                    "depths[{i}] is 0 in {:?}; every stage needs at least 1 block",
                    self.depths
                ),
            );
        }
        if self.groups == 0 {
            return fail(
                "groups",
                "groups is 0; GroupNorm needs at least 1 group (32 is usual)".into(),
            );
        }
        if let Some(eps) = self.eps
            && !(eps.is_finite() && eps > 0.0)
        {
            return fail(
                "eps",
                format!("eps is {eps}; it must be a positive number such as 1e-5"),
            );
        }
        Ok(())
    }

    /// Checks that a training batch of `batch` images of `size = [H, W]`
    /// can go through the network. With `norm: batch` every channel's
    /// statistics must come from more than one value, as in PyTorch; the
    /// fewest are at /32, `batch × ⌈H/32⌉ × ⌈W/32⌉`.
    ///
    /// # Example
    ///
    /// ```
    /// use wsunet::WsResUNetConfig;
    /// use wsunet::layers::Norm;
    ///
    /// let bn = WsResUNetConfig::new(2).with_norm(Norm::Batch);
    /// assert!(bn.check_batch(1, [32, 32]).is_err());
    /// assert!(bn.check_batch(2, [32, 32]).is_ok());
    /// assert!(bn.check_batch(1, [64, 32]).is_ok());
    /// assert!(WsResUNetConfig::new(2).check_batch(1, [32, 32]).is_ok());
    /// ```
    pub fn check_batch(&self, batch: usize, size: [usize; 2]) -> Result<()> {
        if self.norm != Norm::Batch {
            return Ok(());
        }
        let [h, w] = (0..5).fold(size, |s, _| s.map(down2));
        if batch * h * w > 1 {
            return Ok(());
        }
        Err(Error::setting(
            "batch_size",
            format!(
                "a training batch of {batch} image of {}×{} gives BatchNorm a single value per channel at /32 ({h}×{w} maps), which it cannot normalize (PyTorch refuses it too); use a batch size of at least 2, crops of at least 33 px on one side, or norm `group`",
                size[0], size[1]
            ),
        ))
    }

    /// The variant's short name (see [`Variant`]).
    ///
    /// ```
    /// use wsunet::WsResUNetConfig;
    /// use wsunet::layers::{Norm, Standardization};
    ///
    /// assert_eq!(WsResUNetConfig::new(2).variant_name(), "ws-gn");
    /// let bn = WsResUNetConfig::new(2).with_norm(Norm::Batch).with_standardization(Standardization::None);
    /// assert_eq!(bn.variant_name(), "bn");
    /// ```
    pub fn variant_name(&self) -> String {
        self.variant().name()
    }

    /// The config's [`Variant`]: its norm, and whether its kernels are
    /// standardized.
    pub fn variant(&self) -> Variant {
        Variant::new(self.standardization.standardizes(), self.norm)
    }

    /// Sets the standardization and norm of a [`Variant`] (a `ws-` variant
    /// keeps a standardizing formula already chosen, else takes `seed`).
    pub fn with_variant(mut self, variant: Variant) -> Self {
        self.norm = variant.norm;
        self.standardization = match (variant.ws, self.standardization.standardizes()) {
            (false, _) => Standardization::None,
            (true, true) => self.standardization,
            (true, false) => Standardization::Seed,
        };
        self
    }

    /// The variant in words for settings lines: `seed standardization,
    /// group norm`.
    pub fn variant_description(&self) -> String {
        format!(
            "{} standardization, {} norm",
            self.standardization, self.norm
        )
    }

    /// The eps every WsConv2d uses.
    pub fn resolved_eps(&self) -> f64 {
        self.eps.unwrap_or(self.standardization.default_eps())
    }

    /// [`init`](Self::init) with weights drawn from a local random stream
    /// seeded by `seed` (each parameter from its own stream, `init.rs`): the
    /// same seed gives the same weights, whatever other threads draw, and
    /// Burn's process-wide generator is neither reseeded nor used.
    ///
    /// # Example
    ///
    /// ```
    /// use wsunet::WsResUNetConfig;
    ///
    /// let device = burn::tensor::Device::flex();
    /// let config = WsResUNetConfig::new(2).with_widths(vec![8, 8, 16, 16, 16]).with_groups(4);
    /// let a = config.init_seeded(&device, 7).unwrap();
    /// let b = config.init_seeded(&device, 7).unwrap();
    /// a.head.weight.val().into_data().assert_eq(&b.head.weight.val().into_data(), true);
    /// ```
    pub fn init_seeded(&self, device: &Device, seed: u64) -> Result<WsResUNet> {
        Ok(self
            .init(device)?
            .map(&mut crate::init::SeededInit::new(seed)))
    }

    /// Builds the network with freshly initialized weights, after
    /// [`validate`](Self::validate). Each parameter's id is derived from its
    /// path in the network, so saved files do not depend on the run.
    pub fn init(&self, device: &Device) -> Result<WsResUNet> {
        self.validate()?;
        let w = &self.widths;
        let block = |i, o| {
            WsGnActConfig::new(i, o)
                .with_norm(self.norm)
                .with_groups(self.groups)
                .with_standardization(self.standardization)
                .with_eps(self.eps)
        };
        let stage = |i: usize| -> Vec<WsResBlock> {
            (0..self.depths[i - 1])
                .map(|b| {
                    let (input, stride) = if b == 0 { (w[i - 1], 2) } else { (w[i], 1) };
                    WsResBlockConfig::new(input, w[i])
                        .with_stride(stride)
                        .with_norm(self.norm)
                        .with_groups(self.groups)
                        .with_standardization(self.standardization)
                        .with_eps(self.eps)
                        .init(device)
                })
                .collect()
        };
        let up = |i: usize| {
            UpConfig::new(w[i + 1], w[i], w[i])
                .with_norm(self.norm)
                .with_groups(self.groups)
                .with_standardization(self.standardization)
                .with_eps(self.eps)
                .init(device)
        };
        Ok(WsResUNet {
            stem: block(self.in_channels, w[0])
                .with_kernel_size(7)
                .with_stride(2)
                .init(device),
            stage1: stage(1),
            stage2: stage(2),
            stage3: stage(3),
            stage4: stage(4),
            bridge: (0..2).map(|_| block(w[4], w[4]).init(device)).collect(),
            dec4: up(3),
            dec3: up(2),
            dec2: up(1),
            dec1: up(0),
            head: Conv2dConfig::new([w[0], self.num_classes], [1, 1])
                .with_padding(PaddingConfig2d::Valid)
                .init(device),
            in_channels: self.in_channels,
        }
        // Ids from paths, not Burn's random ones: the files that record them
        // are then the same bytes for the same weights.
        .map(&mut crate::init::PathIds::default()))
    }

    /// The parts of the network with their channels, strides and output sizes
    /// for an input of `size = [H, W]` (for `wsunet info`).
    ///
    /// # Panics
    ///
    /// If the config is invalid (call [`validate`](Self::validate) first).
    pub fn layout(&self, size: [usize; 2]) -> Vec<PartInfo> {
        self.validate().expect("layout of an invalid config");
        let w = &self.widths;
        let mut sizes = vec![size.map(down2)];
        for _ in 0..4 {
            sizes.push(sizes.last().unwrap().map(down2));
        }
        let part = |name, blocks, in_channels, out_channels, level: usize, size| PartInfo {
            name,
            blocks,
            in_channels,
            out_channels,
            stride: 1 << level,
            size,
        };
        let stages = ["stage1", "stage2", "stage3", "stage4"];
        let decs = ["dec1", "dec2", "dec3", "dec4"];
        let mut parts = vec![part("stem", 1, self.in_channels, w[0], 1, sizes[0])];
        for i in 1..=4 {
            parts.push(part(
                stages[i - 1],
                self.depths[i - 1],
                w[i - 1],
                w[i],
                i + 1,
                sizes[i],
            ));
        }
        parts.push(part("bridge", 2, w[4], w[4], 5, sizes[4]));
        for i in (0..4).rev() {
            parts.push(part(decs[i], 2, w[i + 1], w[i], i + 1, sizes[i]));
        }
        parts.push(part("head", 1, w[0], self.num_classes, 0, size));
        parts
    }

    /// GroupNorm group counts actually used, one per distinct width (each
    /// width its own count under `instance`; none without GroupNorm).
    pub fn group_counts(&self) -> Vec<(usize, usize)> {
        let mut widths = self.widths.clone();
        widths.sort_unstable();
        widths.dedup();
        widths
            .into_iter()
            .filter_map(|c| Some((c, self.norm.group_count(c, self.groups)?)))
            .collect()
    }
}

/// The WS+GroupNorm residual U-Net.
///
/// Stem (7×7, /2) → four residual stages (/4 … /32) → bridge (two WsGnAct) →
/// four bilinear decoder steps with skips (/16 … /2) → 1×1 head → bilinear
/// resize of the logits to the input size. Field names are the state-dict
/// prefixes of the PyTorch twin.
///
/// # Shapes
///
/// - input: `[batch, in_channels, H, W]` with `H, W ≥ 32`, any parity
/// - output: `[batch, num_classes, H, W]` (logits)
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use wsunet::WsResUNetConfig;
///
/// let device = Device::flex();
/// let config = WsResUNetConfig::new(2).with_widths(vec![8, 8, 16, 16, 16]).with_groups(4);
/// let model = config.init(&device).unwrap();
/// let logits = model.forward(Tensor::<4>::zeros([1, 3, 37, 40], &device));
/// assert_eq!(logits.dims(), [1, 2, 37, 40]);
/// ```
#[derive(Module, Debug)]
pub struct WsResUNet {
    /// 7×7 stride-2 WsGnAct.
    pub stem: WsGnAct,
    /// Residual stage at /4.
    pub stage1: Vec<WsResBlock>,
    /// Residual stage at /8.
    pub stage2: Vec<WsResBlock>,
    /// Residual stage at /16.
    pub stage3: Vec<WsResBlock>,
    /// Residual stage at /32.
    pub stage4: Vec<WsResBlock>,
    /// Two WsGnAct at /32.
    pub bridge: Vec<WsGnAct>,
    /// Decoder step to /16 (skip: stage3).
    pub dec4: Up,
    /// Decoder step to /8 (skip: stage2).
    pub dec3: Up,
    /// Decoder step to /4 (skip: stage1).
    pub dec2: Up,
    /// Decoder step to /2 (skip: stem).
    pub dec1: Up,
    /// 1×1 convolution to the class logits (with bias).
    pub head: Conv2d,
    /// Input channels expected.
    #[module(skip)]
    pub in_channels: usize,
}

impl WsResUNet {
    /// Checks that an input of shape `dims` can go through the network.
    pub fn check_input(&self, dims: [usize; 4]) -> Result<()> {
        let [_, c, h, w] = dims;
        if c != self.in_channels {
            return Err(Error::InputChannels {
                channels: c,
                expected: self.in_channels,
            });
        }
        if h < MIN_INPUT_SIZE || w < MIN_INPUT_SIZE {
            return Err(Error::InputTooSmall {
                height: h,
                width: w,
                min: MIN_INPUT_SIZE,
            });
        }
        Ok(())
    }

    /// Computes per-pixel class logits.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, in_channels, H, W]`, `H, W ≥ 32`
    /// - output: `[batch, num_classes, H, W]`
    ///
    /// # Panics
    ///
    /// If [`check_input`](Self::check_input) rejects the shape.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Err(e) = self.check_input(x.dims()) {
            panic!("WsResUNet::forward: {e}");
        }
        let [_, _, h, w] = x.dims();
        let s0 = self.stem.forward(x);
        let s1 = run_stage(&self.stage1, s0.clone());
        let s2 = run_stage(&self.stage2, s1.clone());
        let s3 = run_stage(&self.stage3, s2.clone());
        let s4 = run_stage(&self.stage4, s3.clone());
        let b = self.bridge.iter().fold(s4, |x, block| block.forward(x));
        let d = self.dec4.forward(b, s3);
        let d = self.dec3.forward(d, s2);
        let d = self.dec2.forward(d, s1);
        let d = self.dec1.forward(d, s0);
        // Resizing after the 1×1 head equals resizing before it (both linear,
        // bilinear weights sum to 1) and touches num_classes channels, not w0.
        resize_bilinear(self.head_forward(d), [h, w])
    }

    /// The 1×1 head (built 1×1, stride 1, no padding) through this crate's
    /// convolution: `Conv2d::forward` would run Flex's generic convolution,
    /// and a transposed convolution for its input gradient.
    fn head_forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.head.weight.val(),
            self.head.bias.as_ref().map(|b| b.val()),
            ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
        )
    }
}

impl WsResUNet {
    /// The network prepared for inference: every WsConv2d holds its
    /// standardized kernel and runs as a plain convolution, so no
    /// standardization is computed per forward. Outputs equal the unfolded
    /// network's (within float rounding). Keep the unfolded model for
    /// training and checkpoints.
    ///
    /// # Example
    ///
    /// ```
    /// use burn::tensor::{Device, Tensor};
    /// use wsunet::WsResUNetConfig;
    ///
    /// let device = Device::flex();
    /// let model = WsResUNetConfig::new(2).with_widths(vec![8, 8, 16, 16, 16]).with_groups(4).init(&device).unwrap();
    /// let x = Tensor::<4>::ones([1, 3, 32, 32], &device);
    /// let reference = model.forward(x.clone());
    /// let folded = model.fold();
    /// assert!(folded.is_folded());
    /// let diff: f32 = (folded.forward(x) - reference).abs().max().into_scalar();
    /// assert!(diff < 1e-4);
    /// ```
    pub fn fold(self) -> Self {
        let fold_all = |blocks: Vec<WsResBlock>| blocks.into_iter().map(WsResBlock::fold).collect();
        WsResUNet {
            stem: self.stem.fold(),
            stage1: fold_all(self.stage1),
            stage2: fold_all(self.stage2),
            stage3: fold_all(self.stage3),
            stage4: fold_all(self.stage4),
            bridge: self.bridge.into_iter().map(WsGnAct::fold).collect(),
            dec4: self.dec4.fold(),
            dec3: self.dec3.fold(),
            dec2: self.dec2.fold(),
            dec1: self.dec1.fold(),
            head: self.head,
            in_channels: self.in_channels,
        }
    }

    /// Whether [`fold`](Self::fold) was applied.
    pub fn is_folded(&self) -> bool {
        self.stem.conv.folded
    }

    /// The normalization after the convolutions (`None` once a BatchNorm
    /// model is folded).
    pub fn norm(&self) -> Norm {
        self.stem.norm()
    }
}

fn run_stage(blocks: &[WsResBlock], x: Tensor<4>) -> Tensor<4> {
    blocks.iter().fold(x, |x, block| block.forward(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parameter_counts_match_the_spec() {
        let device = Device::flex();
        let model = WsResUNetConfig::new(4).init(&device).unwrap();
        assert_eq!(model.num_params(), 11_348_260);
        let deep = WsResUNetConfig::new(4)
            .with_depths(vec![2, 2, 2, 2])
            .init(&device)
            .unwrap();
        assert_eq!(deep.num_params(), 17_618_980);
    }

    #[test]
    fn scaled_adds_one_gain_per_output_channel() {
        let device = Device::flex();
        let config = WsResUNetConfig::new(4).with_widths(vec![8, 8, 16, 16, 16]);
        let seed = config.init(&device).unwrap().num_params();
        let scaled = config
            .clone()
            .with_standardization(Standardization::Scaled)
            .init(&device)
            .unwrap()
            .num_params();
        // Output channels of every WsConv2d: stem 8; stages 8+8+8, 16+16+16 ×3
        // (conv1, conv2, proj); bridge 16×2; decoders (reduce + refine) 2·w.
        let expected = 8 + 24 + 48 * 3 + 32 + 2 * (16 + 16 + 8 + 8);
        assert_eq!(scaled - seed, expected);
    }

    #[test]
    fn invalid_configs_are_errors_naming_the_field() {
        let cases = [
            (WsResUNetConfig::new(0), "num_classes"),
            (WsResUNetConfig::new(2).with_in_channels(0), "in_channels"),
            (
                WsResUNetConfig::new(2).with_widths(vec![32, 64, 128, 256]),
                "widths has 4",
            ),
            (
                WsResUNetConfig::new(2).with_widths(vec![32, 0, 128, 256, 512]),
                "widths[1]",
            ),
            (
                WsResUNetConfig::new(2).with_depths(vec![1, 1, 1]),
                "depths has 3",
            ),
            (
                WsResUNetConfig::new(2).with_depths(vec![1, 0, 1, 1]),
                "depths[1]",
            ),
            (WsResUNetConfig::new(2).with_groups(0), "groups"),
            (WsResUNetConfig::new(2).with_eps(Some(-1.0)), "eps"),
            (WsResUNetConfig::new(2).with_eps(Some(f64::NAN)), "eps"),
        ];
        for (config, needle) in cases {
            let err = config.init(&Device::flex()).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
    }

    #[test]
    fn odd_sizes_work_and_small_inputs_are_rejected() {
        let device = Device::flex();
        let model = WsResUNetConfig::new(3)
            .with_widths(vec![4, 4, 8, 8, 8])
            .with_groups(2)
            .init(&device)
            .unwrap();
        for [h, w] in [[77, 101], [32, 32], [33, 65]] {
            let y = model.forward(Tensor::<4>::zeros([1, 3, h, w], &device));
            assert_eq!(y.dims(), [1, 3, h, w]);
        }
        let err = model.check_input([1, 3, 31, 64]).unwrap_err().to_string();
        assert!(err.contains("31×64") && err.contains("32×32"), "{err}");
        let err = model.check_input([1, 1, 64, 64]).unwrap_err().to_string();
        assert!(
            err.contains("1 channels") && err.contains("expects 3"),
            "{err}"
        );
    }

    #[test]
    fn layout_follows_the_spec_table() {
        let parts = WsResUNetConfig::new(4).layout([256, 256]);
        let names: Vec<_> = parts.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "stem", "stage1", "stage2", "stage3", "stage4", "bridge", "dec4", "dec3", "dec2",
                "dec1", "head"
            ]
        );
        assert_eq!(parts[4].size, [8, 8]);
        assert_eq!(parts[4].stride, 32);
        assert_eq!(
            (parts[6].in_channels, parts[6].out_channels, parts[6].size),
            (512, 256, [16, 16])
        );
        assert_eq!(parts[10].size, [256, 256]);
        let odd = WsResUNetConfig::new(4).layout([77, 101]);
        assert_eq!(odd[0].size, [39, 51]);
        assert_eq!(odd[4].size, [3, 4]);
    }

    #[test]
    fn config_json_round_trip_with_defaults() {
        let config =
            WsResUNetConfig::from_json(r#"{"num_classes": 5, "standardization": "scaled"}"#)
                .unwrap();
        assert_eq!(config.widths, vec![32, 64, 128, 256, 512]);
        assert_eq!(config.standardization, Standardization::Scaled);
        let back: WsResUNetConfig =
            serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(back, config);
        let err = WsResUNetConfig::from_json(r#"{"num_classes": 5, "width": [1]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `width`"), "{err}");
        let err = WsResUNetConfig::from_json(r#"{"widths": [1, 2, 3, 4, 5]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `num_classes`"), "{err}");
    }
}
