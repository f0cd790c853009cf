//! `mlx_vlm/models/smolvlm/smolvlm.py`: SmolVLM's `Model`, Python's
//! subclass of Idefics3's adding nothing: here the same model registered
//! as SmolVLM ([`SmolVlm`]).

use crate::models::idefics3::idefics3::{Model as Idefics3Model, Variant};
use crate::registry::Family;

/// SmolVLM ([`super::FAMILY`]).
#[derive(Debug, Clone, Copy)]
pub struct SmolVlm;

impl Variant for SmolVlm {
    const FAMILY: &'static Family = &super::FAMILY;
}

/// Python: `Model(Idefics3Model)`.
pub type Model = Idefics3Model<SmolVlm>;
