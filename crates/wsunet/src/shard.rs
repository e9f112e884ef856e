//! Splitting a list of inputs into shards, one per task of a cluster job
//! (nnU-Net's `-part_id I -num_parts N`): every input lands in exactly one
//! shard whatever the count, and shard sizes differ by at most one.
//!
//! A shard is `I/N` (I counts from 0) or comes from a Slurm job array's
//! environment ([`Shard::from_slurm`]).

use std::fmt;

use crate::error::{Error, Result};

/// One share of a sorted input list: the inputs whose position `k` has
/// `k mod count == index` (round robin, so files of one kind that sort
/// together are spread over all shards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// How many shards there are.
    pub count: usize,
}

impl Default for Shard {
    /// The whole list.
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Shard `index` of `count`; an error when `index` is not below `count`.
    pub fn new(index: usize, count: usize) -> Result<Shard> {
        if count == 0 {
            return Err(Error::setting(
                "shard",
                "shard count 0: there must be at least one shard (e.g. 0/1)",
            ));
        }
        if index >= count {
            return Err(Error::setting(
                "shard",
                format!(
                    "shard {index}/{count} does not exist: with {count} shard(s) the index is 0 to {} (it counts from 0)",
                    count - 1
                ),
            ));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N`, or `auto` for the Slurm job array this process runs in
    /// (read through `env`, e.g. `|k| std::env::var(k).ok()`).
    ///
    /// # Example
    ///
    /// ```
    /// use wsunet::shard::Shard;
    ///
    /// let shard = Shard::parse("1/3", |_| None).unwrap();
    /// assert_eq!(shard.select((0..8).collect()), vec![1, 4, 7]);
    /// assert!(Shard::parse("3/3", |_| None).is_err());
    /// assert!(Shard::parse("auto", |_| None).is_err()); // not in a job array
    /// ```
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        if text == "auto" {
            return Shard::from_slurm(env);
        }
        let number = |s: &str| s.trim().parse::<usize>().ok();
        match text.split_once('/').map(|(i, n)| (number(i), number(n))) {
            Some((Some(index), Some(count))) => Shard::new(index, count),
            _ => Err(Error::setting(
                "shard",
                format!(
                    "`{text}` is not a shard; give I/N (e.g. 0/4, I from 0 to N-1) or auto (a Slurm job array's task)"
                ),
            )),
        }
    }

    /// The shard of this Slurm job array task: `N` is
    /// `SLURM_ARRAY_TASK_COUNT`, `I` the task's place among the array's
    /// tasks (`(SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN) / STEP`, so
    /// `--array=0-3`, `1-4` and `0-6:2` all give 0/4 … 3/4). An error naming
    /// what is missing outside an array, and for an array whose IDs are not
    /// one evenly spaced range (`--array=1,5,6`).
    pub fn from_slurm(env: impl Fn(&str) -> Option<String>) -> Result<Shard> {
        let var =
            |name: &str| -> Result<Option<usize>> {
                match env(name) {
                    None => Ok(None),
                    Some(v) => v.trim().parse().map(Some).map_err(|_| {
                        Error::setting("shard", format!("{name}={v} is not a number"))
                    }),
                }
            };
        let id = var("SLURM_ARRAY_TASK_ID")?.ok_or_else(|| {
            Error::setting(
                "shard",
                "shard auto needs a Slurm job array, and SLURM_ARRAY_TASK_ID is not set (this process is not an array task); submit with sbatch --array=0-N, or give the shard as I/N",
            )
        })?;
        let missing = |name: &str| {
            Error::setting(
                "shard",
                format!(
                    "SLURM_ARRAY_TASK_ID is set but {name} is not (Slurm older than 17.11?); give the shard as I/N"
                ),
            )
        };
        let count =
            var("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| missing("SLURM_ARRAY_TASK_COUNT"))?;
        let min = var("SLURM_ARRAY_TASK_MIN")?.ok_or_else(|| missing("SLURM_ARRAY_TASK_MIN"))?;
        let step = var("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let offset = id.checked_sub(min).filter(|o| o % step == 0);
        match offset.map(|o| o / step).filter(|&i| i < count) {
            Some(index) => Shard::new(index, count),
            None => Err(Error::setting(
                "shard",
                format!(
                    "array task {id} is not one of {count} evenly spaced IDs from {min} (step {step}); submit the array as one range (e.g. --array=0-{}), or give the shard as I/N",
                    count.saturating_sub(1)
                ),
            )),
        }
    }

    /// Whether the input at `position` of the sorted list is in this shard.
    pub fn holds(&self, position: usize) -> bool {
        position % self.count == self.index
    }

    /// This shard's share of `items`, in their order.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(k, _)| self.holds(*k))
            .map(|(_, item)| item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_in_exactly_one_shard_and_sizes_differ_by_at_most_one() {
        for len in [0, 1, 5, 17, 100] {
            for count in 1..=7 {
                let mut seen = vec![0; len];
                let mut sizes = Vec::new();
                for index in 0..count {
                    let share = Shard::new(index, count).unwrap().select((0..len).collect());
                    sizes.push(share.len());
                    for k in share {
                        seen[k] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{len} in {count}");
                let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
                assert!(
                    hi.unwrap() - lo.unwrap() <= 1,
                    "{len} in {count}: {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn bad_shards_are_errors_naming_the_fix() {
        let none = |_: &str| None;
        for (text, needle) in [
            ("4/4", "index is 0 to 3"),
            ("0/0", "at least one shard"),
            ("x", "give I/N"),
            ("1/", "give I/N"),
            ("-1/4", "give I/N"),
            ("auto", "SLURM_ARRAY_TASK_ID is not set"),
        ] {
            let err = Shard::parse(text, none).unwrap_err();
            assert_eq!(err.field(), Some("shard"));
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        assert_eq!(
            Shard::parse(" 2 / 5", none).unwrap(),
            Shard::new(2, 5).unwrap()
        );
    }

    fn slurm(vars: &[(&str, &str)]) -> Result<Shard> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Shard::parse("auto", move |k| {
            vars.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn auto_reads_the_slurm_job_array() {
        let task = |id: &str, count: &str, min: &str, step: Option<&str>| {
            let mut vars = vec![
                ("SLURM_ARRAY_TASK_ID", id),
                ("SLURM_ARRAY_TASK_COUNT", count),
                ("SLURM_ARRAY_TASK_MIN", min),
            ];
            if let Some(step) = step {
                vars.push(("SLURM_ARRAY_TASK_STEP", step));
            }
            slurm(&vars)
        };
        assert_eq!(
            task("2", "4", "0", None).unwrap(),
            Shard::new(2, 4).unwrap()
        );
        assert_eq!(
            task("4", "4", "1", Some("1")).unwrap(),
            Shard::new(3, 4).unwrap()
        );
        assert_eq!(
            task("6", "4", "0", Some("2")).unwrap(),
            Shard::new(3, 4).unwrap()
        );
        let err = task("5", "3", "1", None).unwrap_err().to_string();
        assert!(err.contains("not one of 3 evenly spaced"), "{err}");
        let err = task("3", "4", "0", Some("2")).unwrap_err().to_string();
        assert!(err.contains("evenly spaced"), "{err}");
        let err = slurm(&[("SLURM_ARRAY_TASK_ID", "1")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SLURM_ARRAY_TASK_COUNT is not"), "{err}");
        let err = task("x", "4", "0", None).unwrap_err().to_string();
        assert!(
            err.contains("SLURM_ARRAY_TASK_ID=x is not a number"),
            "{err}"
        );
    }
}
