//! The manifest's wire format: a fixed `vmark_manifest_header` followed by a postcard
//! payload. The header carries the payload's format version, size and CRC, so a reader can
//! refuse a newer format, a truncated blob or an absurd size before decoding anything.

use crate::abi::{
    vmark_manifest_header, MANIFEST_HEADER_SIZE, VMARK_MANIFEST_MAGIC, VMARK_MANIFEST_MAX_PAYLOAD,
};
use crate::bounded;
pub use crate::bounded::LimitHit;
use crate::limits;
use crate::manifest::Manifest;
use crate::text::escape;
use crate::types::TypeError;

/// Version of the manifest payload schema this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Fewer bytes than the header or than the header announces.
    #[error("manifest truncated: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// Not a vmark manifest.
    #[error("not a vmark manifest (bad magic {0:#x})")]
    BadMagic(u64),
    /// Written by a newer vmark.
    #[error("manifest format version {found} is newer than this vmark understands ({supported}); upgrade vmark on the host")]
    NewerFormat {
        /// Version in the blob.
        found: u16,
        /// Newest version this build reads.
        supported: u16,
    },
    /// Written by an older, incompatible vmark.
    #[error("manifest format version {found} is older than this vmark supports ({supported}); rebuild the module with this vmark-build")]
    OlderFormat {
        /// Version in the blob.
        found: u16,
        /// Oldest version this build reads.
        supported: u16,
    },
    /// The header's own size field is wrong.
    #[error("manifest header size {0} is not {MANIFEST_HEADER_SIZE}")]
    BadHeaderSize(u16),
    /// The payload is larger than any real manifest.
    #[error("manifest payload of {0} bytes exceeds the {VMARK_MANIFEST_MAX_PAYLOAD}-byte limit")]
    TooLarge(u32),
    /// The payload does not match its checksum.
    #[error("manifest checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum {
        /// Stored CRC.
        stored: u32,
        /// Computed CRC.
        computed: u32,
    },
    /// The payload is not a valid postcard encoding of a manifest.
    #[error("manifest payload is malformed: {0}")]
    Payload(#[from] postcard::Error),
    /// The payload decodes but its types are inconsistent.
    #[error("manifest types are invalid: {0}")]
    Types(#[from] TypeError),
    /// The payload describes more than vmark decodes: a list or name over its limit, or a
    /// model over its memory budget. Refused before the allocation.
    #[error("manifest refused: {0}")]
    Limit(LimitHit),
    /// A mark refers to a type the table does not hold.
    #[error("mark \"{}\" refers to missing type {ty}", escape(.mark))]
    MarkType {
        /// Mark name.
        mark: String,
        /// Missing id.
        ty: u32,
    },
    /// Strings or lists beyond sane limits.
    #[error("manifest field {0} is too long")]
    FieldTooLong(&'static str),
}

/// Encodes a manifest with its header.
pub fn encode(manifest: &Manifest) -> Result<Vec<u8>, ManifestError> {
    let payload = postcard::to_allocvec(manifest)?;
    let size = u32::try_from(payload.len())
        .ok()
        .filter(|&n| n <= VMARK_MANIFEST_MAX_PAYLOAD)
        .ok_or(ManifestError::TooLarge(u32::MAX))?;
    let mut out = Vec::with_capacity(MANIFEST_HEADER_SIZE + payload.len());
    out.extend_from_slice(&VMARK_MANIFEST_MAGIC.to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(MANIFEST_HEADER_SIZE as u16).to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses and checks a header; returns it so the caller knows how many payload bytes to read.
pub fn decode_header(bytes: &[u8]) -> Result<vmark_manifest_header, ManifestError> {
    if bytes.len() < MANIFEST_HEADER_SIZE {
        return Err(ManifestError::Truncated {
            needed: MANIFEST_HEADER_SIZE,
            have: bytes.len(),
        });
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let header = vmark_manifest_header {
        magic: u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
        format_version: u16_at(8),
        header_size: u16_at(10),
        payload_size: u32_at(12),
        payload_crc32: u32_at(16),
        reserved: u32_at(20),
    };
    if header.magic != VMARK_MANIFEST_MAGIC {
        return Err(ManifestError::BadMagic(header.magic));
    }
    if header.format_version > FORMAT_VERSION {
        return Err(ManifestError::NewerFormat {
            found: header.format_version,
            supported: FORMAT_VERSION,
        });
    }
    if header.format_version < FORMAT_VERSION {
        return Err(ManifestError::OlderFormat {
            found: header.format_version,
            supported: FORMAT_VERSION,
        });
    }
    if usize::from(header.header_size) != MANIFEST_HEADER_SIZE {
        return Err(ManifestError::BadHeaderSize(header.header_size));
    }
    if header.payload_size > VMARK_MANIFEST_MAX_PAYLOAD {
        return Err(ManifestError::TooLarge(header.payload_size));
    }
    Ok(header)
}

/// Total bytes (header and payload) of the manifest whose header starts `bytes`.
pub fn encoded_len(bytes: &[u8]) -> Result<usize, ManifestError> {
    Ok(MANIFEST_HEADER_SIZE + decode_header(bytes)?.payload_size as usize)
}

/// The memory budget of the model decoded from a payload of `payload_len` bytes: a constant
/// factor of its length, under an absolute cap (see [`crate::limits`]).
pub fn model_budget(payload_len: usize) -> u64 {
    (payload_len as u64)
        .saturating_mul(limits::MANIFEST_MODEL_BYTES_PER_PAYLOAD_BYTE)
        .saturating_add(limits::MANIFEST_MODEL_BASE_BYTES)
        .min(limits::MANIFEST_MAX_MODEL_BYTES)
}

/// Decodes and validates a manifest. Never panics, and the decoded model never takes more
/// memory than [`model_budget`] of the payload's length (every list, string and element is
/// charged before it is allocated), whatever the input. Validation takes time linear in the
/// payload.
pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let header = decode_header(bytes)?;
    let end = MANIFEST_HEADER_SIZE + header.payload_size as usize;
    let payload = bytes
        .get(MANIFEST_HEADER_SIZE..end)
        .ok_or(ManifestError::Truncated {
            needed: end,
            have: bytes.len(),
        })?;
    let computed = crc32fast::hash(payload);
    if computed != header.payload_crc32 {
        return Err(ManifestError::BadChecksum {
            stored: header.payload_crc32,
            computed,
        });
    }
    let (manifest, outcome) = bounded::scope(model_budget(payload.len()), || {
        postcard::from_bytes::<Manifest>(payload)
    });
    if let Some(hit) = outcome.hit {
        return Err(ManifestError::Limit(hit));
    }
    let manifest = manifest?;
    validate(&manifest)?;
    Ok(manifest)
}

/// Limits on the manifest's own fields (the types are checked by `TypeTable::validate`).
/// Decoding already enforces them; checked again for manifests built in memory.
const MAX_NAME: usize = limits::MANIFEST_MAX_NAME_LEN;
const MAX_MARKS: usize = limits::MANIFEST_MAX_MARKS;

fn validate(m: &Manifest) -> Result<(), ManifestError> {
    if m.module.len() > MAX_NAME {
        return Err(ManifestError::FieldTooLong("module"));
    }
    if m.kernel_release.len() > MAX_NAME {
        return Err(ManifestError::FieldTooLong("kernel_release"));
    }
    if m.build_id.len() > limits::MANIFEST_MAX_BUILD_ID_LEN {
        return Err(ManifestError::FieldTooLong("build_id"));
    }
    if m.marks.len() > MAX_MARKS {
        return Err(ManifestError::FieldTooLong("marks"));
    }
    m.types.validate()?;
    for mark in &m.marks {
        if mark.name.len() > MAX_NAME || mark.symbol.len() > MAX_NAME {
            return Err(ManifestError::FieldTooLong("mark name"));
        }
        if m.types.get(mark.ty).is_none() {
            return Err(ManifestError::MarkType {
                mark: mark.name.clone(),
                ty: mark.ty.0,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Mark, MarkFlags};
    use crate::types::{AggregateKind, BaseEncoding, Member, Type, TypeId, TypeTable};

    fn sample() -> Manifest {
        let mut types = TypeTable::new();
        let int = types.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        let s = types.push(Type::Aggregate {
            kind: AggregateKind::Struct,
            name: Some("pair".into()),
            size: 8,
            members: vec![
                Member {
                    name: Some("a".into()),
                    ty: int,
                    offset: 0,
                    bitfield: None,
                },
                Member {
                    name: Some("b".into()),
                    ty: int,
                    offset: 4,
                    bitfield: None,
                },
            ],
        });
        Manifest {
            module: "demo".into(),
            kernel_release: "6.1.0-test".into(),
            build_id: vec![1, 2, 3],
            pointer_depth: 1,
            marks: vec![Mark {
                name: "p".into(),
                symbol: "p".into(),
                ty: s,
                size: 8,
                flags: MarkFlags(MarkFlags::SEQ),
            }],
            types,
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let bytes = encode(&m).unwrap();
        assert_eq!(encoded_len(&bytes).unwrap(), bytes.len());
        assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn newer_version_is_named() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(err, ManifestError::NewerFormat { found, .. } if found == FORMAT_VERSION + 1)
        );
        assert!(err.to_string().contains("upgrade vmark"));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample()).unwrap();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn corrupted_payload_fails_checksum() {
        let mut bytes = encode(&sample()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(
            decode(&bytes),
            Err(ManifestError::BadChecksum { .. })
        ));
    }

    /// Re-encodes a payload with a valid header, so the checks behind the CRC are reached.
    fn with_header(payload: &[u8]) -> Vec<u8> {
        let mut out = encode(&sample()).unwrap()[..MANIFEST_HEADER_SIZE].to_vec();
        out[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        out[16..20].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn absurd_size_is_refused_before_reading() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(ManifestError::TooLarge(_))));
    }

    #[test]
    fn huge_announced_lengths_do_not_allocate() {
        // A payload claiming 2^60 marks in a few bytes: postcard refuses it without
        // reserving memory for them.
        let payload = [
            4, b'd', b'e', b'm', b'o', 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x0f,
        ];
        assert!(decode(&with_header(&payload)).is_err());
    }

    #[test]
    fn cyclic_types_are_rejected() {
        let mut m = sample();
        let mut types = TypeTable::new();
        let a = types.push(Type::Typedef {
            name: "a".into(),
            target: TypeId(1),
        });
        types.push(Type::Typedef {
            name: "b".into(),
            target: a,
        });
        m.types = types;
        m.marks[0].ty = a;
        let bytes = with_header(&postcard::to_allocvec(&m).unwrap());
        assert!(matches!(decode(&bytes), Err(ManifestError::Types(_))));
    }

    /// The start of a payload: module "demo", no kernel release, no build id, pointer
    /// depth 0, no marks; the type table follows.
    fn payload_head() -> Vec<u8> {
        vec![4, b'd', b'e', b'm', b'o', 0, 0, 0, 0]
    }

    /// `v` as a postcard varint.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    #[test]
    fn a_manifest_claiming_a_million_types_is_refused_before_allocating() {
        // A million types announced and present (one-byte `void`s): refused on the count,
        // before the list is allocated.
        let mut payload = payload_head();
        varint(1_000_000, &mut payload);
        payload.extend(std::iter::repeat_n(0u8, 1_000_000));
        let (r, outcome) = bounded::scope(model_budget(payload.len()), || {
            postcard::from_bytes::<Manifest>(&payload)
        });
        assert!(r.is_err());
        assert_eq!(
            outcome.hit,
            Some(LimitHit::Count {
                what: "types",
                limit: limits::MANIFEST_MAX_TYPES
            })
        );
        assert!(outcome.used < 4096, "{} bytes charged", outcome.used);
        assert!(matches!(
            decode(&with_header(&payload)),
            Err(ManifestError::Limit(LimitHit::Count { what: "types", .. }))
        ));
        // Announced but not present: refused as truncated, having allocated only for
        // the elements that were there.
        let mut payload = payload_head();
        varint(1_000_000, &mut payload);
        payload.extend([0u8; 64]);
        let (r, outcome) = bounded::scope(model_budget(payload.len()), || {
            postcard::from_bytes::<Manifest>(&payload)
        });
        assert!(r.is_err());
        assert!(
            outcome.used < 64 * 2 * 64 + 4096,
            "{} bytes charged",
            outcome.used
        );
    }

    #[test]
    fn a_dense_manifest_cannot_expand_past_its_budget() {
        // 200 000 one-byte types (`void`): 200 KB that used to become a 12.8 MB model.
        let n = 200_000;
        let mut payload = payload_head();
        varint(n, &mut payload);
        payload.extend(std::iter::repeat_n(0u8, n as usize));
        let err = decode(&with_header(&payload)).unwrap_err();
        assert!(
            matches!(err, ManifestError::Limit(LimitHit::Memory { .. })),
            "{err}"
        );
        // The same count of a realistic mix (named structs of members) fits its budget.
        let mut m = sample();
        let int = m.types.len() as u32;
        m.types.push(Type::Base {
            name: "int".into(),
            size: 4,
            encoding: BaseEncoding::Signed,
        });
        for k in 0..2000 {
            m.types.push(Type::Aggregate {
                kind: AggregateKind::Struct,
                name: Some(format!("s{k}")),
                size: 40,
                members: (0..10)
                    .map(|i| Member {
                        name: Some(format!("field_{i}")),
                        ty: TypeId(int),
                        offset: 4 * i,
                        bitfield: None,
                    })
                    .collect(),
            });
        }
        let bytes = encode(&m).unwrap();
        let payload = &bytes[MANIFEST_HEADER_SIZE..];
        let (r, outcome) = bounded::scope(model_budget(payload.len()), || {
            postcard::from_bytes::<Manifest>(payload)
        });
        assert_eq!(r.unwrap(), m);
        assert!(outcome.hit.is_none());
        assert!(
            outcome.used <= 12 * payload.len() as u64,
            "{} bytes of model for {} of payload",
            outcome.used,
            payload.len()
        );
        assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn long_names_and_lists_are_refused_while_decoding() {
        let mut m = sample();
        m.marks[0].name = "m".repeat(limits::MANIFEST_MAX_NAME_LEN + 1);
        let bytes = with_header(&postcard::to_allocvec(&m).unwrap());
        assert!(matches!(
            decode(&bytes),
            Err(ManifestError::Limit(LimitHit::Name { .. }))
        ));
        let mut m = sample();
        m.types.push(Type::Function {
            ret: TypeId(0),
            params: vec![TypeId(0); limits::TYPE_MAX_PARAMS + 1],
            variadic: false,
        });
        let bytes = with_header(&postcard::to_allocvec(&m).unwrap());
        assert!(matches!(
            decode(&bytes),
            Err(ManifestError::Limit(LimitHit::Count { .. }))
        ));
    }

    #[test]
    fn errors_quote_guest_names_escaped() {
        let mut m = sample();
        m.marks[0].name = "evil\x1b[2J".into();
        m.marks[0].ty = TypeId(77);
        let bytes = with_header(&postcard::to_allocvec(&m).unwrap());
        let text = decode(&bytes).unwrap_err().to_string();
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("evil\\x1b[2J"), "{text}");
    }

    #[test]
    fn mark_with_missing_type_is_rejected() {
        let mut m = sample();
        m.marks[0].ty = TypeId(77);
        let bytes = with_header(&postcard::to_allocvec(&m).unwrap());
        assert!(matches!(
            decode(&bytes),
            Err(ManifestError::MarkType { .. })
        ));
    }
}
