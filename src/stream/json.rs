//! The SDK's JSON style, byte for byte: an sd blob's name is the SHA-384 of its bytes, so a
//! descriptor written with other spacing or escaping would be a different blob.

use std::io;

/// A `serde_json` formatter that writes what Python's `json.dumps` writes by default:
/// `", "` between items, `": "` between key and value, and `ensure_ascii` escaping (every
/// character above `~` as lowercase `\uXXXX`, astral characters as surrogate pairs). serde_json's
/// own escaping of `"`, `\` and control characters already matches Python's.
pub(super) struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut plain_start = 0;
        for (pos, c) in fragment.char_indices() {
            if c <= '~' {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[plain_start..pos])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            plain_start = pos + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[plain_start..])
    }
}

#[cfg(test)]
mod tests {
    use crate::stream::sd::tests::tiny;

    #[test]
    fn serializer_matches_python_json_dumps_byte_for_byte() {
        let mut sd = tiny();
        sd.stream_hash = "X".to_owned();
        // Produced by Python: json.dumps(d, sort_keys=True) for the same dict.
        let expected = concat!(
            r#"{"blobs": [{"blob_hash": "abababababababababababababababababababababababababababababababababababababababababababababababab", "blob_num": 0, "iv": "00000000000000000000000000000000", "length": 32}, "#,
            r#"{"blob_num": 1, "iv": "11111111111111111111111111111111", "length": 0}], "#,
            r#""key": "22222222222222222222222222222222", "stream_hash": "X", "stream_name": "612e62696e", "#,
            r#""stream_type": "lbryfile", "suggested_file_name": "612e62696e"}"#
        );
        assert_eq!(String::from_utf8(sd.to_bytes()).unwrap(), expected);
    }

    #[test]
    fn serializer_escapes_like_python_ensure_ascii() {
        let mut sd = tiny();
        sd.blobs.clear();
        sd.stream_type = "é\u{7f}😀\n\u{1}~\"\\".to_owned();
        let text = String::from_utf8(sd.to_bytes()).unwrap();
        // Python: json.dumps("é\x7f😀\n\x01~\"\\")
        assert!(
            text.contains(r#""stream_type": "\u00e9\u007f\ud83d\ude00\n\u0001~\"\\""#),
            "{text}"
        );
        assert!(text.starts_with(r#"{"blobs": [], "key": "#), "{text}");
    }
}
