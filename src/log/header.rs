//! The record header: a few tagged fields in front of a record's payload, readable without
//! parsing the payload.
//!
//! The log itself stores opaque bytes; this module only fixes how a writer may put small
//! fields in front of them, so a reader that needs one field (the delivery tail routing by
//! instance) reads a few bytes instead of scanning a JSON document. What the tags mean is
//! the writer's business (the event record's tags are in `envelope.rs`).
//!
//! # Format, version 1
//!
//! ```text
//! 0x01                      marker and version (a JSON payload starts with `{` or
//!                           whitespace, never 0x01: records without a header still read)
//! u16 LE   fields_len       bytes of the fields that follow
//! fields:  u8 tag, u16 LE len, len bytes of value     (repeated, in tag order)
//! payload                   the rest of the record
//! ```
//!
//! A reader skips tags it does not know, so fields can be added without a new version; a
//! different layout gets a new marker byte. Values are at most `u16::MAX` bytes.
//!
//! The event log's records use tags 1 (instance), 2 (event name), 3 (chat), since
//! filters 4 (the event's filter facts, binary, with their own version byte) and since the
//! attempt log 5 (the WhatsApp message id, empty for none); records written before a tag
//! simply lack it. Their meaning is defined by the writer,
//! `envelope::header_tag`; this module only frames them.

/// The first byte of a record with a version-1 header.
pub const HEADER_V1: u8 = 0x01;

/// A record whose header is cut short or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record header: {0}")]
pub struct HeaderError(&'static str);

/// The header fields of one record, borrowed from its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Header<'a> {
    fields: &'a [u8],
}

impl<'a> Header<'a> {
    /// The value of the first field tagged `tag`, if the record has one.
    pub fn get(&self, tag: u8) -> Option<&'a [u8]> {
        self.iter().find(|(t, _)| *t == tag).map(|(_, value)| value)
    }

    /// Whether the record had no header (written before headers, or by a writer without).
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Every field, in stored order. Fields were checked by [`split`].
    fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> {
        let mut rest = self.fields;
        std::iter::from_fn(move || {
            let (field, after) = next_field(rest).ok()??;
            rest = after;
            Some(field)
        })
    }
}

/// One field off the front of `bytes`: `Ok(None)` at the end.
#[allow(clippy::type_complexity)]
fn next_field(bytes: &[u8]) -> Result<Option<((u8, &[u8]), &[u8])>, HeaderError> {
    let Some((&tag, rest)) = bytes.split_first() else {
        return Ok(None);
    };
    let (len, rest) = take_u16(rest).ok_or(HeaderError("a field's length is cut short"))?;
    if rest.len() < len {
        return Err(HeaderError("a field's value is cut short"));
    }
    let (value, rest) = rest.split_at(len);
    Ok(Some(((tag, value), rest)))
}

fn take_u16(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    Some((usize::from(u16::from_le_bytes(*len)), rest))
}

/// Splits a record into its header and its payload. A record without a header has an empty
/// one and is all payload.
pub fn split(record: &[u8]) -> Result<(Header<'_>, &[u8]), HeaderError> {
    match record.split_first() {
        Some((&HEADER_V1, rest)) => {
            let (len, rest) = take_u16(rest).ok_or(HeaderError("its length is cut short"))?;
            if rest.len() < len {
                return Err(HeaderError("its fields are cut short"));
            }
            let (fields, payload) = rest.split_at(len);
            // Checked once here, so lookups never meet a cut field.
            let mut check = fields;
            while let Some((_, after)) = next_field(check)? {
                check = after;
            }
            Ok((Header { fields }, payload))
        }
        _ => Ok((Header::default(), record)),
    }
}

/// Writes a version-1 header of `fields` (tag, value) into `out`, to be followed by the
/// payload. Fails when a value or the whole header is over `u16::MAX` bytes: nothing is
/// written then.
pub fn write(out: &mut Vec<u8>, fields: &[(u8, &[u8])]) -> Result<(), HeaderError> {
    let len: usize = fields.iter().map(|(_, value)| 3 + value.len()).sum();
    let len = u16::try_from(len).map_err(|_| HeaderError("the fields are over 64 KiB"))?;
    if fields.iter().any(|(_, v)| v.len() > usize::from(u16::MAX)) {
        return Err(HeaderError("a field is over 64 KiB"));
    }
    out.reserve(3 + usize::from(len));
    out.push(HEADER_V1);
    out.extend_from_slice(&len.to_le_bytes());
    for (tag, value) in fields {
        out.push(*tag);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_unknown_tags_are_skipped() {
        let mut out = Vec::new();
        write(&mut out, &[(1, b"inst"), (9, b"later"), (3, b"")]).unwrap();
        out.extend_from_slice(b"{\"x\":1}");
        let (header, payload) = split(&out).unwrap();
        assert_eq!(header.get(1), Some(&b"inst"[..]));
        assert_eq!(header.get(3), Some(&b""[..]));
        assert_eq!(header.get(2), None);
        assert_eq!(payload, b"{\"x\":1}");
    }

    #[test]
    fn a_record_without_a_header_is_all_payload() {
        for record in [&b"{\"a\":1}"[..], b" {}", b""] {
            let (header, payload) = split(record).unwrap();
            assert!(header.is_empty());
            assert_eq!(payload, record);
        }
    }

    #[test]
    fn cut_or_oversized_headers_are_errors_not_panics() {
        let mut out = Vec::new();
        write(&mut out, &[(1, b"instance")]).unwrap();
        for cut in 1..out.len() {
            assert!(split(&out[..cut]).is_err(), "cut at {cut}");
        }
        // A field whose length runs past the header's own.
        assert!(split(&[HEADER_V1, 4, 0, 1, 9, 0, b'x']).is_err());
        let big = vec![b'x'; 70_000];
        let mut out = Vec::new();
        assert!(write(&mut out, &[(1, &big)]).is_err());
        assert!(out.is_empty());
    }
}
