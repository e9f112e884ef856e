//! `fit_groups`: the GroupNorm group count the seed uses for a channel count.

/// The group count every layer starts from (the classic 32 of GroupNorm's
/// paper and of the seed), before [`fit_groups`] lowers it to divide a
/// width. The one home of this default: layer configs and the model config
/// take it from here.
pub const DEFAULT_GROUPS: usize = 32;

/// The largest group count `g ≤ min(groups, channels)` that divides `channels`.
///
/// The seed starts from the classic 32 groups and lowers the count until it
/// divides the channel count, so any width works with GroupNorm
/// (48 channels, 32 groups → 24; 10 channels → 10).
///
/// # Panics
///
/// If `channels` or `groups` is 0 (programmer misuse; configs are validated
/// before layers are built).
///
/// # Example
///
/// ```
/// use wsunet::layers::fit_groups;
/// assert_eq!(fit_groups(48, 32), 24);
/// assert_eq!(fit_groups(10, 32), 10);
/// assert_eq!(fit_groups(64, 32), 32);
/// ```
pub fn fit_groups(channels: usize, groups: usize) -> usize {
    assert!(
        channels > 0 && groups > 0,
        "fit_groups needs positive numbers, got channels={channels}, groups={groups}"
    );
    let mut g = groups.min(channels);
    while !channels.is_multiple_of(g) {
        g -= 1;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::fit_groups;

    #[test]
    fn spec_examples() {
        assert_eq!(fit_groups(48, 32), 24);
        assert_eq!(fit_groups(10, 32), 10);
        assert_eq!(fit_groups(512, 32), 32);
        assert_eq!(fit_groups(7, 32), 7);
        assert_eq!(fit_groups(33, 32), 11);
        assert_eq!(fit_groups(1, 32), 1);
        assert_eq!(fit_groups(96, 1), 1);
    }

    #[test]
    fn always_divides_and_is_maximal() {
        for c in 1..200 {
            for g in 1..40 {
                let f = fit_groups(c, g);
                assert_eq!(c % f, 0, "c={c} g={g} f={f}");
                assert!(f <= g.min(c));
                assert!(((f + 1)..=g.min(c)).all(|h| c % h != 0));
            }
        }
    }

    #[test]
    #[should_panic(expected = "channels=0")]
    fn zero_channels_is_misuse() {
        fit_groups(0, 32);
    }
}
