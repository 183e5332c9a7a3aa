//! The manifest of a marked module: which marks it has and their exact C types.

use crate::bounded;
use crate::types::{TypeId, TypeTable};
use serde::{Deserialize, Serialize};

/// Flags of a mark (the same bits as `VMARK_F_*` in `vmark_abi.h`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkFlags(pub u16);

impl MarkFlags {
    /// Written under `VMARK_WRITE_BEGIN`/`VMARK_WRITE_END`: reads can be checked for tearing.
    pub const SEQ: u16 = crate::abi::VMARK_F_SEQ as u16;
    /// The module calls `VMARK_TRIGGER` on it.
    pub const TRIGGER: u16 = crate::abi::VMARK_F_TRIGGER as u16;

    /// Whether the mark has a write sequence.
    pub fn has_seq(self) -> bool {
        self.0 & Self::SEQ != 0
    }

    /// Whether the mark can trigger.
    pub fn can_trigger(self) -> bool {
        self.0 & Self::TRIGGER != 0
    }

    /// Short human form, e.g. `seq,trigger`.
    pub fn describe(self) -> String {
        let mut parts = Vec::new();
        if self.has_seq() {
            parts.push("seq");
        }
        if self.can_trigger() {
            parts.push("trigger");
        }
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(",")
        }
    }
}

/// One marked variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// The mark's name (`VMARK_NAMED`'s string, or the variable's name).
    #[serde(deserialize_with = "bounded::manifest_name")]
    pub name: String,
    /// The ELF symbol of the variable.
    #[serde(deserialize_with = "bounded::manifest_name")]
    pub symbol: String,
    /// The variable's type in [`Manifest::types`].
    pub ty: TypeId,
    /// `sizeof` the variable.
    pub size: u64,
    /// Flags.
    pub flags: MarkFlags,
}

/// Everything the host needs to decode a module's marks.
///
/// Deserializing one is bounded as [`TypeTable`]'s is (names, marks and build id within
/// [`crate::limits`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Module name (as the kernel knows it).
    #[serde(deserialize_with = "bounded::manifest_name")]
    pub module: String,
    /// `vermagic`'s kernel release the module was built for.
    #[serde(deserialize_with = "bounded::manifest_name")]
    pub kernel_release: String,
    /// Identifies the exact build (a hash of the module's allocated sections and debug info).
    #[serde(deserialize_with = "bounded::build_id")]
    pub build_id: Vec<u8>,
    /// How many pointer levels the type closure follows from each mark.
    pub pointer_depth: u32,
    /// The marks, in the order of the module's records.
    #[serde(deserialize_with = "bounded::marks")]
    pub marks: Vec<Mark>,
    /// The closure of types the marks reach.
    pub types: TypeTable,
}

impl Manifest {
    /// The mark with this name.
    pub fn mark(&self, name: &str) -> Option<&Mark> {
        self.marks.iter().find(|m| m.name == name)
    }

    /// Build id as lowercase hex.
    pub fn build_id_hex(&self) -> String {
        self.build_id.iter().map(|b| format!("{b:02x}")).collect()
    }
}
