//! `Norm`: which normalization follows each convolution of the network.
//!
//! The seed's model is WS + GroupNorm; BatchNorm, InstanceNorm and no
//! normalization are the variants its claim is measured against (GroupNorm:
//! Wu & He, arXiv:1803.08494; BatchNorm: Ioffe & Szegedy, arXiv:1502.03167;
//! InstanceNorm: Ulyanov et al., arXiv:1607.08022, nnU-Net's norm).

use serde::{Deserialize, Serialize};

use super::fit_groups;

/// The normalization after each convolution.
///
/// | variant | layer | state-dict keys | conv bias |
/// |---|---|---|---|
/// | `Group` | GroupNorm (eps 1e-5, affine) | `gn.weight`, `gn.bias` | no |
/// | `Batch` | [`BatchNorm2d`](super::BatchNorm2d) (eps 1e-5, momentum 0.1) | `bn.weight`, `bn.bias`, `bn.running_mean`, `bn.running_var` | no |
/// | `Instance` | GroupNorm with one channel per group (eps 1e-5, affine): PyTorch's `InstanceNorm2d(affine=True)` | `gn.weight`, `gn.bias` | no |
/// | `None` | none | — | `conv.bias` |
///
/// A convolution followed by no normalization gets a bias (the shift a norm
/// would otherwise provide), as PyTorch's plain `Conv2d` has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Norm {
    /// GroupNorm: statistics per sample, independent of the batch (the seed's).
    #[default]
    Group,
    /// BatchNorm: batch statistics in training, running statistics in
    /// evaluation and prediction.
    Batch,
    /// No normalization; the convolutions have biases.
    None,
    /// InstanceNorm: statistics per sample and channel (nnU-Net's choice
    /// for small batches), as a GroupNorm with one channel per group, so it
    /// shares GroupNorm's kernel and keys.
    Instance,
}

impl Norm {
    /// Every variant, in documentation order.
    pub const ALL: [Norm; 4] = [Norm::Group, Norm::Batch, Norm::None, Norm::Instance];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Norm::Group => "group",
            Norm::Batch => "batch",
            Norm::None => "none",
            Norm::Instance => "instance",
        }
    }

    /// The GroupNorm group count after a convolution with `channels`
    /// outputs: [`fit_groups`]`(channels, groups)` for `Group`, `channels`
    /// for `Instance`, none for the norms without GroupNorm.
    ///
    /// # Example
    ///
    /// ```
    /// use wsunet::layers::Norm;
    /// assert_eq!(Norm::Group.group_count(48, 32), Some(24));
    /// assert_eq!(Norm::Instance.group_count(48, 32), Some(48));
    /// assert_eq!(Norm::Batch.group_count(48, 32), None);
    /// ```
    pub fn group_count(self, channels: usize, groups: usize) -> Option<usize> {
        match self {
            Norm::Group => Some(fit_groups(channels, groups)),
            Norm::Instance => Some(channels),
            Norm::Batch | Norm::None => None,
        }
    }
}

impl std::fmt::Display for Norm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Norm;

    #[test]
    fn names_round_trip_and_group_is_the_default() {
        for norm in Norm::ALL {
            let json = serde_json::to_value(norm).unwrap();
            assert_eq!(json, norm.name());
            assert_eq!(serde_json::from_value::<Norm>(json).unwrap(), norm);
        }
        assert_eq!(Norm::default(), Norm::Group);
        let err = serde_json::from_value::<Norm>("layer".into()).unwrap_err();
        assert!(
            err.to_string()
                .contains("`group`, `batch`, `none`, `instance`"),
            "{err}"
        );
    }
}
