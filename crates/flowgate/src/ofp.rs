//! `flowgate ofp-decode`: OpenFlow messages in hex, decoded by flowgate's codec.

/// Decodes and prints every message in `hex`.
pub fn ofp_decode(hex: &str) -> Result<(), String> {
    let bytes = parse_hex(hex)?;
    let mut rest = bytes.as_slice();
    if rest.is_empty() {
        return Err("no bytes given".to_string());
    }
    while !rest.is_empty() {
        let len = match openflow::message_length(rest) {
            Ok(Some(len)) if len <= rest.len() => len,
            Ok(_) => return Err(format!("truncated message: {} bytes left", rest.len())),
            Err(e) => return Err(format!("cannot frame message: {e}")),
        };
        let msg =
            openflow::OfpMessage::decode(&rest[..len]).map_err(|e| format!("cannot decode message: {e}"))?;
        println!("{} ({}) xid={:#x}", msg.body.name(), msg.version, msg.xid);
        println!("{:#?}", msg.body);
        rest = &rest[len..];
    }
    Ok(())
}

pub fn parse_hex(hex: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("odd number of hex digits".to_string());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(s, 16).map_err(|_| format!("{s:?} is not a hex byte"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parsing_ignores_spaces_and_refuses_garbage() {
        assert_eq!(parse_hex("04 00 0008").unwrap(), vec![4, 0, 0, 8]);
        assert!(parse_hex("040").is_err());
        assert!(parse_hex("zz").is_err());
    }

    #[test]
    fn decodes_a_hello() {
        assert!(ofp_decode("0400000800000001").is_ok());
        assert!(ofp_decode("04000010").is_err());
        assert!(ofp_decode("").is_err());
    }
}
