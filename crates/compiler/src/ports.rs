//! Port ranges as masked matches: `tcp_dst=1000-1999` is not something a
//! flow can match, but a handful of value/mask pairs is.

/// The fewest (value, mask) pairs whose union is exactly `from..=to`.
pub fn range_to_masks(from: u16, to: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut start, end) = (u32::from(from), u32::from(to));
    while start <= end {
        // The largest aligned block that starts at `start` and fits.
        let mut size_log2 = if start == 0 {
            16
        } else {
            start.trailing_zeros().min(16)
        };
        while start + (1 << size_log2) - 1 > end {
            size_log2 -= 1;
        }
        let mask = (0xffff_u32 << size_log2) & 0xffff;
        out.push((start as u16, mask as u16));
        start += 1 << size_log2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covers(masks: &[(u16, u16)], port: u16) -> bool {
        masks.iter().any(|(v, m)| port & m == *v)
    }

    #[test]
    fn known_ranges() {
        assert_eq!(range_to_masks(80, 80), vec![(80, 0xffff)]);
        assert_eq!(range_to_masks(0, 65535), vec![(0, 0)]);
        assert_eq!(range_to_masks(1024, 2047), vec![(1024, 0xfc00)]);
        assert_eq!(range_to_masks(1, 3), vec![(1, 0xffff), (2, 0xfffe)]);
    }

    proptest! {
        #[test]
        fn masks_cover_exactly_the_range(a in any::<u16>(), b in any::<u16>(), probe in any::<u16>()) {
            let (from, to) = (a.min(b), a.max(b));
            let masks = range_to_masks(from, to);
            prop_assert!(masks.len() <= 30);
            prop_assert_eq!(covers(&masks, probe), (from..=to).contains(&probe));
            prop_assert!(covers(&masks, from) && covers(&masks, to));
            // Value bits are inside their masks (Open vSwitch requires it).
            prop_assert!(masks.iter().all(|(v, m)| v & !m == 0));
        }
    }
}
