//! `fnmatch(pattern, text, 0)` for ASCII bytes, as glibc and musl do it with no flags:
//! `*` any run (including `/`), `?` one byte, `[...]` a set with ranges and `!`/`^`
//! negation, `\` escapes the next byte. Iterative with one backtrack point, so hostile
//! patterns cannot blow the stack or take exponential time.

/// Whether `text` matches `pattern`.
pub fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(&pc) = pattern.get(p) {
            match pc {
                b'*' => {
                    p += 1;
                    star = Some((p, t));
                    continue;
                }
                _ => {
                    if let Some(&tc) = text.get(t) {
                        if let Some(len) = match_one(pattern, p, tc) {
                            p += len;
                            t += 1;
                            continue;
                        }
                    }
                }
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more byte, if there is one.
        match star {
            Some((star_p, star_t)) if star_t < text.len() => {
                p = star_p;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            _ => return false,
        }
    }
}

/// Matches one pattern element at `pattern[p]` against `c`; returns its length in the
/// pattern on a match.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern.get(p)? {
        b'?' => Some(1),
        b'[' => match bracket(pattern, p + 1, c) {
            Some((matched, len)) => matched.then_some(len + 1),
            // No closing `]`: the `[` is an ordinary character.
            None => (c == b'[').then_some(1),
        },
        b'\\' => match pattern.get(p + 1) {
            Some(&escaped) => (escaped == c).then_some(2),
            None => (c == b'\\').then_some(1),
        },
        &literal => (literal == c).then_some(1),
    }
}

/// A bracket expression starting after `[`: (matched, length up to and including `]`).
fn bracket(pattern: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start;
    let negate = matches!(pattern.get(i), Some(b'!') | Some(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &item = pattern.get(i)?;
        if item == b']' && !first {
            return Some((matched != negate, i + 1 - start));
        }
        first = false;
        let low = if item == b'\\' {
            i += 1;
            *pattern.get(i)?
        } else {
            item
        };
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&h| h != b']') {
            let mut high_at = i + 2;
            let mut high = *pattern.get(high_at)?;
            if high == b'\\' {
                high_at += 1;
                high = *pattern.get(high_at)?;
            }
            if low <= c && c <= high {
                matched = true;
            }
            i = high_at + 1;
        } else {
            if low == c {
                matched = true;
            }
            i += 1;
        }
    }
}

/// Whether `pattern` has glob characters (`*`, `?`, `[`).
pub fn is_glob(pattern: &[u8]) -> bool {
    pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

#[cfg(test)]
mod tests {
    use super::fnmatch as m;

    #[test]
    fn basics() {
        assert!(m(b"", b""));
        assert!(!m(b"", b"a"));
        assert!(m(b"*", b""));
        assert!(m(b"*", b"a/b"));
        assert!(m(b"a?c", b"abc"));
        assert!(!m(b"a?c", b"ac"));
        assert!(m(
            b"pci:v00008086d*sv*sd*bc*sc*i*",
            b"pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"
        ));
        assert!(!m(b"pci:v00008086d*", b"pci:v00001AF4d00001000"));
    }

    #[test]
    fn brackets() {
        assert!(m(b"[a-c]x", b"bx"));
        assert!(!m(b"[!a-c]x", b"bx"));
        assert!(m(b"[^a-c]x", b"dx"));
        assert!(m(b"[]]", b"]"));
        assert!(m(b"[a-]", b"-"));
        assert!(m(b"[Ll]", b"L"));
        assert!(m(b"[", b"["));
        assert!(!m(b"[ab", b"a"));
        assert!(m(
            b"mdio:0000000000010100000010011?????",
            b"mdio:000000000001010000001001101010"
        ));
    }

    #[test]
    fn escapes_and_backtracking() {
        assert!(m(b"a\\*b", b"a*b"));
        assert!(!m(b"a\\*b", b"axb"));
        assert!(m(b"*a*a*a*a*b", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
        assert!(!m(b"*a*a*a*a*b", &[b'a'; 4000]));
        assert!(m(b"x\\", b"x\\"));
    }
}
