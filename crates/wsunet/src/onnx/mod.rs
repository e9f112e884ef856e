//! ONNX export of a [`WsResUNet`]: a self-contained `.onnx` file of the folded
//! network that any ONNX runtime runs with no custom operator.
//!
//! The graph follows [`WsResUNet::forward`] part by part (stem, four stages,
//! bridge, four decoder steps, head, final resize):
//!
//! - every WsConv2d is a plain `Conv` whose kernel is the library's own
//!   folded kernel ([`WsResUNet::fold`]), so a runtime pays nothing for WS;
//! - GroupNorm is `Reshape [0, G, -1] → InstanceNormalization → Reshape
//!   (back to the input's shape) → Mul γ → Add β`. `GroupNormalization` exists
//!   only from opset 18, which defined its scale and bias per *group*; the
//!   per-channel affine of PyTorch/Burn came only with opset 21, which few
//!   runtimes implement. The classic form is what PyTorch's exporters write
//!   too and uses only long-standing operators (ONNX Runtime, TensorRT,
//!   OpenCV DNN, onnxruntime-web; checked with ONNX Runtime and tract);
//! - SiLU is `x · Sigmoid(x)`;
//! - the bilinear resize is `Resize` with mode `linear` and coordinate
//!   transformation `half_pixel`, PyTorch's `align_corners = False`; its
//!   `sizes` are `Shape(x)[0:2] ++ Shape(target)[2:4]`, computed in the graph,
//!   so batch, height and width are all dynamic;
//! - a decoder step's pointwise reduction and the 1×1 head run before their
//!   bilinear resize, in the order the folded model runs them: the two
//!   commute (the resize's weights sum to 1), and the convolution then sees
//!   a quarter of the pixels.
//!
//! The file uses **opset 17** (IR version 8): the newest opset before
//! `GroupNormalization`, long supported by the runtimes above, and it has
//! everything used here with `Resize`'s `roi`/`scales` as omitted optional
//! inputs.
//!
//! Anything the graph could not reproduce exactly (a dilated or grouped
//! convolution, a GroupNorm without affine parameters, weights that are not
//! float32) is an [`Error::Export`]; no file is written.

mod proto;

use crate::fs::to_json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, PaddingConfig2d};
use burn::tensor::{DType, Tensor};
use prost::Message;

use crate::card::ModelCard;
use crate::data::Normalize;
use crate::error::{Error, Result};
use crate::fs::write_atomic;
use crate::layers::{Up, WsConv2d, WsGnAct, WsResBlock};
use crate::model::WsResUNet;
use proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto, attribute_type,
};

/// The ONNX operator set the exported graph uses.
pub const OPSET: i64 = 17;
/// The ONNX IR version that goes with [`OPSET`].
const IR_VERSION: i64 = 8;

/// Name of the graph input: float32 `[batch, channels, height, width]`.
pub const INPUT: &str = "image";
/// Name of the logits output: float32 `[batch, classes, height, width]`.
pub const LOGITS: &str = "logits";
/// Name of the optional class-index output: int64 `[batch, height, width]`.
pub const LABELS: &str = "labels";

/// What goes into the exported graph besides the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnnxOptions {
    /// The graph applies the card's `(x − mean) / std` itself, so a runtime
    /// feeds images scaled to [0, 1]. Without it the input is expected
    /// already normalized, as the model sees it.
    pub normalize_input: bool,
    /// The graph also outputs [`LABELS`], the arg-max class of each pixel.
    pub argmax: bool,
}

/// An exported ONNX model: the file's bytes and a summary of the graph.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    bytes: Vec<u8>,
    /// How many nodes of each operator type the graph has.
    pub op_counts: BTreeMap<String, usize>,
    /// Number of constant tensors (weights and shape constants).
    pub initializers: usize,
    /// Float parameters stored (the folded network's, plus normalization).
    pub parameters: usize,
    /// Graph output names, in order.
    pub outputs: Vec<&'static str>,
}

impl OnnxModel {
    /// The serialized `ModelProto`, the contents of a `.onnx` file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Total number of nodes in the graph.
    pub fn nodes(&self) -> usize {
        self.op_counts.values().sum()
    }

    /// Writes the file atomically (a temporary sibling, then a rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.bytes)
    }
}

/// Exports `model` (folded here if it is not already) with its `card` as an
/// ONNX graph; the card goes into the file's `metadata_props`
/// (`wsunet.version`, `wsunet.model`, `wsunet.classes`, `wsunet.normalize`,
/// `wsunet.input`, `wsunet.outputs`).
///
/// # Errors
///
/// [`Error::Model`] or [`Error::Setting`] when the card is invalid, [`Error::Export`] when the
/// card does not describe this model or the model has a setting the graph
/// cannot reproduce exactly.
///
/// # Example
///
/// ```
/// use burn::tensor::Device;
/// use wsunet::card::ModelCard;
/// use wsunet::data::{ClassList, Normalize};
/// use wsunet::onnx::{OnnxOptions, to_onnx};
/// use wsunet::WsResUNetConfig;
///
/// let config = WsResUNetConfig::new(2).with_widths(vec![8, 8, 16, 16, 16]).with_groups(4);
/// let model = config.init(&Device::flex()).unwrap();
/// let card = ModelCard {
///     classes: ClassList::numbered(2),
///     normalize: Normalize::neutral(3),
///     model: config,
///     ignore_index: None,
///     crop: None,
///     pixel_size: None,
///     task: Default::default(),
///     instances: None,
/// };
/// let options = OnnxOptions { normalize_input: true, argmax: true };
/// let onnx = to_onnx(&model, &card, &options).unwrap();
/// assert_eq!(onnx.op_counts["Conv"], 24);
/// assert_eq!(onnx.outputs, ["logits", "labels"]);
/// ```
pub fn to_onnx(model: &WsResUNet, card: &ModelCard, options: &OnnxOptions) -> Result<OnnxModel> {
    card.validate()?;
    let classes = model.head.weight.val().dims()[0];
    if model.in_channels != card.model.in_channels || classes != card.model.num_classes {
        return Err(unsupported(format!(
            "the card describes {} input channels and {} classes but the model has {} and {classes}",
            card.model.in_channels, card.model.num_classes, model.in_channels
        )));
    }
    let folded = model.clone().fold();
    let mut g = Graph::default();

    let x = if options.normalize_input {
        g.normalize(&card.normalize, INPUT)
    } else {
        INPUT.to_string()
    };
    let logits = g.network(&folded, &x)?;
    debug_assert_eq!(logits, LOGITS);
    let outputs = outputs(&mut g, classes, options.argmax);
    let output_names: Vec<&'static str> = outputs.iter().map(|(name, _)| *name).collect();
    let input_doc = input_doc(model.in_channels, options.normalize_input);
    let input = value_info(
        INPUT,
        proto::FLOAT,
        &[
            Dim::Batch,
            Dim::Fixed(model.in_channels),
            Dim::Height,
            Dim::Width,
        ],
        &input_doc,
    );

    let op_counts = g.nodes.iter().fold(BTreeMap::new(), |mut counts, node| {
        *counts
            .entry(node.op_type.clone().unwrap_or_default())
            .or_insert(0) += 1;
        counts
    });
    let initializers = g.initializers.len();
    let parameters = g.parameters;
    let metadata = metadata(card, input_doc, &output_names)?;
    let graph = GraphProto {
        node: g.nodes,
        name: Some("wsresunet".into()),
        initializer: g.initializers,
        doc_string: Some(
            "WSResUNet with folded weight standardization (plain Conv kernels)".into(),
        ),
        input: vec![input],
        output: outputs.into_iter().map(|(_, info)| info).collect(),
    };
    let file = ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("wsunet".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: Some(1),
        doc_string: Some(format!(
            "WSResUNet semantic segmentation, {} classes; see metadata_props wsunet.*",
            classes
        )),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: Some(key.into()),
                value: Some(value),
            })
            .collect(),
    };
    Ok(OnnxModel {
        bytes: file.encode_to_vec(),
        op_counts,
        initializers,
        parameters,
        outputs: output_names,
    })
}

/// The graph's outputs, named: the logits, and with `argmax` the labels
/// (an `ArgMax` node added to `g`).
fn outputs(g: &mut Graph, classes: usize, argmax: bool) -> Vec<(&'static str, ValueInfoProto)> {
    let mut outputs = vec![(
        LOGITS,
        value_info(
            LOGITS,
            proto::FLOAT,
            &[Dim::Batch, Dim::Fixed(classes), Dim::Height, Dim::Width],
            "class logits, float32 [batch, classes, height, width]",
        ),
    )];
    if argmax {
        g.op(
            "ArgMax",
            LABELS,
            &[LOGITS],
            vec![int("axis", 1), int("keepdims", 0)],
        );
        outputs.push((
            LABELS,
            value_info(
                LABELS,
                proto::INT64,
                &[Dim::Batch, Dim::Height, Dim::Width],
                "class index of each pixel (arg-max of the logits), int64 [batch, height, width]",
            ),
        ));
    }
    outputs
}

/// What the input holds, for its doc string and `wsunet.input`.
fn input_doc(channels: usize, normalize_input: bool) -> String {
    if normalize_input {
        format!(
            "float32 [batch, {channels}, height, width] image scaled to [0, 1]; the graph applies (x - mean) / std with wsunet.normalize"
        )
    } else {
        format!(
            "float32 [batch, {channels}, height, width] image already normalized as (x - mean) / std with wsunet.normalize (from [0, 1] pixel values)"
        )
    }
}

/// The `wsunet.*` metadata: version, model, classes, normalization, input
/// and outputs, and the training crop (the tile a runtime should predict
/// with) when known.
fn metadata(
    card: &ModelCard,
    input_doc: String,
    outputs: &[&str],
) -> Result<Vec<(&'static str, String)>> {
    let mut metadata = vec![
        ("wsunet.version", env!("CARGO_PKG_VERSION").to_string()),
        ("wsunet.model", to_json(&card.model)?),
        ("wsunet.classes", to_json(&card.classes)?),
        ("wsunet.normalize", to_json(&card.normalize)?),
        ("wsunet.input", input_doc),
        ("wsunet.outputs", outputs.join(",")),
    ];
    if let Some(crop) = card.crop {
        metadata.push(("wsunet.crop", to_json(&crop)?));
    }
    Ok(metadata)
}

fn unsupported(reason: String) -> Error {
    Error::Export {
        format: "ONNX",
        reason,
    }
}

/// A dimension of a graph input or output.
enum Dim {
    Batch,
    Height,
    Width,
    Fixed(usize),
}

fn value_info(name: &str, elem_type: i32, dims: &[Dim], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Dimension {
                dim_value: Some(*n as i64),
                dim_param: None,
            },
            symbolic => Dimension {
                dim_value: None,
                dim_param: Some(
                    match symbolic {
                        Dim::Batch => "batch",
                        Dim::Height => "height",
                        _ => "width",
                    }
                    .into(),
                ),
            },
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(elem_type),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: Some(doc.into()),
    }
}

fn attribute(name: &str, r#type: i32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(r#type),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        i: Some(value),
        ..attribute(name, attribute_type::INT)
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: values.to_vec(),
        ..attribute(name, attribute_type::INTS)
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        f: Some(value),
        ..attribute(name, attribute_type::FLOAT)
    }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        s: Some(value.as_bytes().to_vec()),
        ..attribute(name, attribute_type::STRING)
    }
}

/// A float32 parameter's shape and values, or an error for another type.
fn floats<const D: usize>(name: &str, tensor: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>)> {
    let data = tensor.into_data();
    if data.dtype() != DType::F32 {
        return Err(unsupported(format!(
            "{name} is {:?}; the export writes float32 weights only (load the model in float32)",
            data.dtype()
        )));
    }
    let shape = data.shape().to_vec();
    let values = data
        .try_to_vec::<f32>()
        .map_err(|e| unsupported(format!("{name}: {e:?}")))?;
    Ok((shape, values))
}

/// The graph under construction: nodes in execution order and constants.
///
/// Every node has one output, named like the node; names come from the
/// model's state-dict paths (`stage1.0.conv1.gn`), so they are unique and the
/// graph reads like the model.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    parameters: usize,
    /// Shared int64 constants by value (shapes, slice bounds).
    int_constants: HashMap<Vec<i64>, String>,
    /// Names of the shared float constants (InstanceNormalization's unit
    /// scale and zero bias).
    float_constants: HashSet<String>,
    /// The `Shape` node of each value, made once.
    shapes: HashMap<String, String>,
}

impl Graph {
    /// Appends a node whose single output is named `name`.
    fn op(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.to_string()],
            name: Some(name.to_string()),
            op_type: Some(op_type.to_string()),
            attribute,
        });
        name.to_string()
    }

    fn initializer(&mut self, name: &str, data_type: i32, dims: &[usize], raw: Vec<u8>) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(data_type),
            name: Some(name.to_string()),
            raw_data: Some(raw),
        });
        name.to_string()
    }

    /// A float32 weight (counted as a parameter).
    fn weight(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        debug_assert_eq!(dims.iter().product::<usize>(), values.len());
        self.parameters += values.len();
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, proto::FLOAT, dims, raw)
    }

    /// A shared float32 constant `[len]` filled with `value`.
    fn filled(&mut self, name: &str, len: usize, value: f32) -> String {
        if self.float_constants.insert(name.to_string()) {
            let raw = std::iter::repeat_n(value.to_le_bytes(), len)
                .flatten()
                .collect();
            self.initializer(name, proto::FLOAT, &[len], raw);
        }
        name.to_string()
    }

    /// A shared 1-D int64 constant.
    fn int64s(&mut self, values: &[i64]) -> String {
        if let Some(name) = self.int_constants.get(values) {
            return name.clone();
        }
        let digits: Vec<String> = values
            .iter()
            .map(|v| v.to_string().replace('-', "m"))
            .collect();
        let name = format!("const.i64.{}", digits.join("_"));
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(&name, proto::INT64, &[values.len()], raw);
        self.int_constants.insert(values.to_vec(), name.clone());
        name
    }

    /// `Shape(x)`, made once per value.
    fn shape(&mut self, x: &str) -> String {
        if let Some(shape) = self.shapes.get(x) {
            return shape.clone();
        }
        let shape = self.op("Shape", &format!("{x}.shape"), &[x], vec![]);
        self.shapes.insert(x.to_string(), shape.clone());
        shape
    }

    /// `(x − mean) / std` per channel, as the card's normalization does.
    fn normalize(&mut self, normalize: &Normalize, x: &str) -> String {
        let c = normalize.mean.len();
        let mean = self.weight("input.mean", &[1, c, 1, 1], &normalize.mean);
        let std = self.weight("input.std", &[1, c, 1, 1], &normalize.std);
        let centred = self.op("Sub", "input.centred", &[x, &mean], vec![]);
        self.op("Div", "input.normalized", &[&centred, &std], vec![])
    }

    /// The whole network, in the order of [`WsResUNet::forward`]; the last
    /// node's output is [`LOGITS`].
    fn network(&mut self, model: &WsResUNet, x: &str) -> Result<String> {
        let s0 = self.ws_gn_act(&model.stem, "stem", x)?;
        let s1 = self.stage(&model.stage1, "stage1", &s0)?;
        let s2 = self.stage(&model.stage2, "stage2", &s1)?;
        let s3 = self.stage(&model.stage3, "stage3", &s2)?;
        let s4 = self.stage(&model.stage4, "stage4", &s3)?;
        let mut b = s4;
        for (i, block) in model.bridge.iter().enumerate() {
            b = self.ws_gn_act(block, &format!("bridge.{i}"), &b)?;
        }
        let d = self.up(&model.dec4, "dec4", &b, &s3)?;
        let d = self.up(&model.dec3, "dec3", &d, &s2)?;
        let d = self.up(&model.dec2, "dec2", &d, &s1)?;
        let d = self.up(&model.dec1, "dec1", &d, &s0)?;
        // As in the model: the 1×1 head runs before the resize to the
        // input's size (cheaper, same result).
        let head = self.head(&model.head, "head", &d)?;
        Ok(self.resize(LOGITS, &head, INPUT))
    }

    fn stage(&mut self, blocks: &[WsResBlock], name: &str, x: &str) -> Result<String> {
        let mut x = x.to_string();
        for (i, block) in blocks.iter().enumerate() {
            x = self.res_block(block, &format!("{name}.{i}"), &x)?;
        }
        Ok(x)
    }

    /// `SiLU(conv2(conv1(x)) + (proj(x) or x))`, as [`WsResBlock::forward`].
    fn res_block(&mut self, block: &WsResBlock, name: &str, x: &str) -> Result<String> {
        let shortcut = match &block.proj {
            Some(proj) => self.ws_gn_act(proj, &format!("{name}.proj"), x)?,
            None => x.to_string(),
        };
        let y = self.ws_gn_act(&block.conv1, &format!("{name}.conv1"), x)?;
        let y = self.ws_gn_act(&block.conv2, &format!("{name}.conv2"), &y)?;
        let sum = self.op("Add", &format!("{name}.add"), &[&y, &shortcut], vec![]);
        Ok(self.silu(&format!("{name}.act"), &sum))
    }

    /// `refine(cat[reduce(resize(x, skip's size)), skip])`, as [`Up::forward`];
    /// a pointwise reduction's convolution runs before the resize, as the
    /// folded model runs it (they commute; a quarter of the pixels, and
    /// fewer planes to resize).
    fn up(&mut self, up: &Up, name: &str, x: &str, skip: &str) -> Result<String> {
        let resize = format!("{name}.resize");
        let reduce = format!("{name}.reduce");
        let x = if up.reduce_first() {
            let y = self.ws_conv(&up.reduce.conv, &format!("{reduce}.conv"), x)?;
            let y = self.resize(&resize, &y, skip);
            self.norm_act(&up.reduce, &reduce, &y)?
        } else {
            let x = self.resize(&resize, x, skip);
            self.ws_gn_act(&up.reduce, &reduce, &x)?
        };
        let cat = self.op(
            "Concat",
            &format!("{name}.concat"),
            &[&x, skip],
            vec![int("axis", 1)],
        );
        self.ws_gn_act(&up.refine, &format!("{name}.refine"), &cat)
    }

    /// Conv → GroupNorm (when the model has one; a BatchNorm is folded into
    /// the Conv) → SiLU (when `act`), as [`WsGnAct::forward`].
    fn ws_gn_act(&mut self, block: &WsGnAct, name: &str, x: &str) -> Result<String> {
        let y = self.ws_conv(&block.conv, &format!("{name}.conv"), x)?;
        self.norm_act(block, name, &y)
    }

    /// The GroupNorm (when the block has one) and SiLU (when `act`) of a
    /// block, on its convolution's output `y`.
    fn norm_act(&mut self, block: &WsGnAct, name: &str, y: &str) -> Result<String> {
        debug_assert!(block.bn.is_none(), "to_onnx folds BatchNorm into the Conv");
        let y = y.to_string();
        let y = match &block.gn {
            Some(gn) => self.group_norm(gn, &format!("{name}.gn"), &y)?,
            None => y,
        };
        Ok(if block.act {
            self.silu(&format!("{name}.act"), &y)
        } else {
            y
        })
    }

    /// A folded WsConv2d as a plain `Conv` with the folded kernel.
    fn ws_conv(&mut self, conv: &WsConv2d, name: &str, x: &str) -> Result<String> {
        debug_assert!(conv.folded, "to_onnx folds the model before building");
        if conv.dilation != 1 || conv.groups != 1 {
            return Err(unsupported(format!(
                "{name} has dilation {} and {} groups; WSResUNet's convolutions have dilation 1 and 1 group",
                conv.dilation, conv.groups
            )));
        }
        self.conv(
            name,
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            [conv.stride; 2],
            [conv.padding; 4],
        )
    }

    /// The plain 1×1 head convolution (with bias).
    fn head(&mut self, conv: &Conv2d, name: &str, x: &str) -> Result<String> {
        if conv.dilation != [1, 1] || conv.groups != 1 {
            return Err(unsupported(format!(
                "{name} has dilation {:?} and {} groups; the head is a plain convolution",
                conv.dilation, conv.groups
            )));
        }
        let [top, left, bottom, right] = match conv.padding {
            PaddingConfig2d::Valid => [0; 4],
            PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            PaddingConfig2d::Same => {
                return Err(unsupported(format!(
                    "{name} uses `Same` padding; the head has none"
                )));
            }
        };
        self.conv(
            name,
            x,
            conv.weight.val(),
            conv.bias.as_ref().map(|b| b.val()),
            conv.stride,
            [top, left, bottom, right],
        )
    }

    /// A `Conv` node (dilation 1, one group) whose kernel and bias are the
    /// initializers `{name}.weight` and `{name}.bias`; `pads` is ONNX's
    /// `[top, left, bottom, right]`.
    fn conv(
        &mut self,
        name: &str,
        x: &str,
        weight: Tensor<4>,
        bias: Option<Tensor<1>>,
        strides: [usize; 2],
        pads: [usize; 4],
    ) -> Result<String> {
        let (dims, kernel) = floats(&format!("{name}.weight"), weight)?;
        let mut inputs = vec![
            x.to_string(),
            self.weight(&format!("{name}.weight"), &dims, &kernel),
        ];
        if let Some(bias) = bias {
            let (dims, values) = floats(&format!("{name}.bias"), bias)?;
            inputs.push(self.weight(&format!("{name}.bias"), &dims, &values));
        }
        let as_i64 = |values: &[usize]| values.iter().map(|&v| v as i64).collect::<Vec<_>>();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op(
            "Conv",
            name,
            &inputs,
            vec![
                ints("kernel_shape", &as_i64(&dims[2..])),
                ints("strides", &as_i64(&strides)),
                ints("pads", &as_i64(&pads)),
                ints("dilations", &[1, 1]),
                int("group", 1),
            ],
        ))
    }

    /// GroupNorm as `Reshape [0, G, -1] → InstanceNormalization (unit scale,
    /// zero bias) → Reshape back → Mul γ → Add β`: instance norm over the
    /// grouped axis is group norm (biased variance, eps inside the root,
    /// as Burn's GroupNorm computes it).
    fn group_norm(&mut self, gn: &GroupNorm, name: &str, x: &str) -> Result<String> {
        let (Some(gamma), Some(beta), true) = (&gn.gamma, &gn.beta, gn.affine) else {
            return Err(unsupported(format!(
                "{name} has no affine parameters; WSResUNet's GroupNorms are affine"
            )));
        };
        let (c, groups) = (gn.num_channels, gn.num_groups);
        let (_, gamma) = floats(&format!("{name}.weight"), gamma.val())?;
        let (_, beta) = floats(&format!("{name}.bias"), beta.val())?;

        let grouped_shape = self.int64s(&[0, groups as i64, -1]);
        let grouped = self.op(
            "Reshape",
            &format!("{name}.grouped"),
            &[x, &grouped_shape],
            vec![],
        );
        let ones = self.filled(&format!("const.f32.ones{groups}"), groups, 1.0);
        let zeros = self.filled(&format!("const.f32.zeros{groups}"), groups, 0.0);
        let normalized = self.op(
            "InstanceNormalization",
            &format!("{name}.norm"),
            &[&grouped, &ones, &zeros],
            vec![float("epsilon", gn.epsilon as f32)],
        );
        let shape = self.shape(x);
        let ungrouped = self.op(
            "Reshape",
            &format!("{name}.ungrouped"),
            &[&normalized, &shape],
            vec![],
        );
        let gamma = self.weight(&format!("{name}.weight"), &[c, 1, 1], &gamma);
        let beta = self.weight(&format!("{name}.bias"), &[c, 1, 1], &beta);
        let scaled = self.op(
            "Mul",
            &format!("{name}.scaled"),
            &[&ungrouped, &gamma],
            vec![],
        );
        Ok(self.op("Add", name, &[&scaled, &beta], vec![]))
    }

    /// SiLU as `x · Sigmoid(x)`.
    fn silu(&mut self, name: &str, x: &str) -> String {
        let sigmoid = self.op("Sigmoid", &format!("{name}.sigmoid"), &[x], vec![]);
        self.op("Mul", name, &[x, &sigmoid], vec![])
    }

    /// Bilinear resize of `x` to the height and width of `target`
    /// (`align_corners = False`), sizes taken from the shapes at run time.
    fn resize(&mut self, name: &str, x: &str, target: &str) -> String {
        let (x_shape, target_shape) = (self.shape(x), self.shape(target));
        let (zero, two, four) = (self.int64s(&[0]), self.int64s(&[2]), self.int64s(&[4]));
        let batch_channels = self.op(
            "Slice",
            &format!("{name}.nc"),
            &[&x_shape, &zero, &two],
            vec![],
        );
        let height_width = self.op(
            "Slice",
            &format!("{name}.hw"),
            &[&target_shape, &two, &four],
            vec![],
        );
        let sizes = self.op(
            "Concat",
            &format!("{name}.sizes"),
            &[&batch_channels, &height_width],
            vec![int("axis", 0)],
        );
        // Inputs: X, roi, scales, sizes; roi and scales omitted (empty names).
        self.op(
            "Resize",
            name,
            &[x, "", "", &sizes],
            vec![
                string("mode", "linear"),
                string("coordinate_transformation_mode", "half_pixel"),
            ],
        )
    }
}
