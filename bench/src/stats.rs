//! Median, min and max of a runner's repetitions, and the ratios between
//! runners, oriented so that a larger number always favours mproc.

/// The figures of one runner.
#[derive(Clone, Debug)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every repetition, in the order measured.
    pub runs: Vec<f64>,
}

impl Summary {
    /// `None` for no runs.
    pub fn of(runs: &[f64]) -> Option<Summary> {
        let mut sorted = runs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: runs.to_vec(),
        })
    }
}

/// Whether a smaller or a larger figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

impl Better {
    pub fn key(self) -> &'static str {
        match self {
            Better::Lower => "lower",
            Better::Higher => "higher",
        }
    }

    /// mproc's performance over the other's: above 1 mproc is faster (or
    /// better), below 1 slower; against the limit, the fraction of it
    /// reached (1 = at the limit).
    pub fn ratio(self, mproc: f64, other: f64) -> f64 {
        match self {
            Better::Lower => other / mproc,
            Better::Higher => mproc / other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn ratios_favour_mproc_above_one() {
        assert_eq!(Better::Lower.ratio(1.0, 10.0), 10.0);
        assert_eq!(Better::Higher.ratio(5.0, 10.0), 0.5);
    }
}
