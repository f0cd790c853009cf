//! The `axis=` argument of reductions and similar ops.

/// Which axes an operation works over: Python's `axis=None`, `axis=1` or
/// `axis=[0, 2]`. Negative axes count from the end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Axes {
    /// Every axis (`axis=None`).
    #[default]
    All,
    /// One axis (`axis=1`).
    One(i32),
    /// Several axes (`axis=[0, 2]`).
    Many(Vec<i32>),
}

impl From<i32> for Axes {
    fn from(axis: i32) -> Axes {
        Axes::One(axis)
    }
}

impl From<&[i32]> for Axes {
    fn from(axes: &[i32]) -> Axes {
        Axes::Many(axes.to_vec())
    }
}

impl<const N: usize> From<[i32; N]> for Axes {
    fn from(axes: [i32; N]) -> Axes {
        Axes::Many(axes.to_vec())
    }
}

impl From<Vec<i32>> for Axes {
    fn from(axes: Vec<i32>) -> Axes {
        Axes::Many(axes)
    }
}

impl From<Option<i32>> for Axes {
    /// `None` is every axis (`axis=None`), `Some(i)` one axis.
    fn from(axis: Option<i32>) -> Axes {
        axis.map_or(Axes::All, Axes::One)
    }
}
