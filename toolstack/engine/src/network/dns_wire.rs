//! The little of DNS's wire format the relay (dns_relay.rs) checks: a guest's message must be
//! one standard query with one question, the answer must be a response to that very question.
//! Everything here comes from a guest or is answered to one: bounded, never trusted.

/// The longest query relayed. A real one is a name (≤ 255 bytes) plus a few dozen bytes of
/// header, question and EDNS; more is not a query.
pub const MAX_QUERY: usize = 512;
/// The longest answer relayed (UDP's limit; TCP's length prefix allows no more either).
pub const MAX_ANSWER: usize = 65535;
const HEADER: usize = 12;

/// A query the relay forwards: its id and its question (name, type, class) as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub id: u16,
    pub question: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("{0} bytes: not a DNS message of the allowed size")]
    Size(usize),
    #[error("not a standard query with one question")]
    NotAQuery,
    #[error("malformed question")]
    Question,
    #[error("not the answer to the query")]
    NotTheAnswer,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Checks a guest's message: header with QR=0, opcode QUERY, one question, no answer or
/// authority records, at most one additional (EDNS's OPT); the question's name in plain labels
/// (no compression pointers), at most 255 bytes.
pub fn check_query(msg: &[u8]) -> Result<Query<'_>, Rejected> {
    if msg.len() < HEADER || msg.len() > MAX_QUERY {
        return Err(Rejected::Size(msg.len()));
    }
    let flags = u16_at(msg, 2);
    let (qr, opcode) = (flags >> 15, (flags >> 11) & 0xf);
    let counts = [
        u16_at(msg, 4),
        u16_at(msg, 6),
        u16_at(msg, 8),
        u16_at(msg, 10),
    ];
    if qr != 0 || opcode != 0 || counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1
    {
        return Err(Rejected::NotAQuery);
    }
    let end = question_end(msg, HEADER)?;
    if counts[3] == 0 && end != msg.len() {
        return Err(Rejected::Question);
    }
    Ok(Query {
        id: u16_at(msg, 0),
        question: &msg[HEADER..end],
    })
}

/// Where the question starting at `at` ends (after its type and class).
fn question_end(msg: &[u8], mut at: usize) -> Result<usize, Rejected> {
    let start = at;
    loop {
        let len = *msg.get(at).ok_or(Rejected::Question)? as usize;
        if len & 0xc0 != 0 {
            return Err(Rejected::Question);
        }
        at += 1 + len;
        if at - start > 255 {
            return Err(Rejected::Question);
        }
        if len == 0 {
            break;
        }
    }
    let end = at + 4;
    if end > msg.len() {
        return Err(Rejected::Question);
    }
    Ok(end)
}

/// Checks an answer before it goes back to the guest: a response (QR=1) with the query's id,
/// one question, byte for byte the query's, within MAX_ANSWER.
pub fn check_answer(query: &Query<'_>, msg: &[u8]) -> Result<(), Rejected> {
    if msg.len() < HEADER || msg.len() > MAX_ANSWER {
        return Err(Rejected::Size(msg.len()));
    }
    let end = HEADER + query.question.len();
    let same = u16_at(msg, 0) == query.id
        && u16_at(msg, 2) >> 15 == 1
        && u16_at(msg, 4) == 1
        && msg.get(HEADER..end) == Some(query.question);
    if same {
        Ok(())
    } else {
        Err(Rejected::NotTheAnswer)
    }
}

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;
pub const NOERROR: u8 = 0;
pub const SERVFAIL: u8 = 2;
pub const NXDOMAIN: u8 = 3;
pub const REFUSED: u8 = 5;

/// A checked query's question, read: its name in lower case, dots between the labels (None
/// when a label holds anything but letters, digits, `-` or `_`: no container has such a name),
/// its type and class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Option<String>,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    pub fn is_in(&self) -> bool {
        self.qclass == CLASS_IN
    }
}

/// Reads the question `check_query` found (its bytes are labels, then type and class).
pub fn question(q: &Query<'_>) -> Question {
    let b = q.question;
    let tail = b.len() - 4;
    let mut labels: Vec<String> = Vec::new();
    let mut plain = true;
    let mut at = 0;
    while at < tail {
        let len = b[at] as usize;
        if len == 0 {
            break;
        }
        let label = &b[at + 1..(at + 1 + len).min(tail)];
        plain &= label
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_".contains(c));
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        at += 1 + len;
    }
    Question {
        name: plain.then(|| labels.join(".")),
        qtype: u16_at(b, tail),
        qclass: u16_at(b, tail + 2),
    }
}

/// The answer hx gives itself to query `q`: `rcode`, and one record (TTL 600, as docker's)
/// per address in `a`, A for IPv4 and AAAA for IPv6; authoritative, recursion flag copied,
/// the question echoed.
pub fn answer(q: &Query<'_>, query_flags: u16, rcode: u8, a: &[std::net::IpAddr]) -> Vec<u8> {
    let rd = query_flags & 0x0100;
    let flags: u16 = 0x8000 | 0x0400 | rd | 0x0080 | (rcode as u16 & 0xf);
    let mut m = Vec::with_capacity(HEADER + q.question.len() + 28 * a.len());
    m.extend_from_slice(&q.id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&(a.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(q.question);
    for ip in a {
        // A pointer to the question's name at offset 12.
        let (rtype, data) = match ip {
            std::net::IpAddr::V4(v4) => (TYPE_A, v4.octets().to_vec()),
            std::net::IpAddr::V6(v6) => (TYPE_AAAA, v6.octets().to_vec()),
        };
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&rtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(&600u32.to_be_bytes());
        m.extend_from_slice(&(data.len() as u16).to_be_bytes());
        m.extend_from_slice(&data);
    }
    m
}

/// The flags word of a message checked by `check_query`.
pub fn flags(msg: &[u8]) -> u16 {
    u16_at(msg, 2)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A query for `name` (A, IN), as a resolver sends it.
    pub(crate) fn query(id: u16, name: &str) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    fn answer(q: &[u8]) -> Vec<u8> {
        let mut a = q.to_vec();
        a[2] |= 0x80;
        a[7] = 1;
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 172, 18, 0, 2]);
        a
    }

    #[test]
    fn a_resolver_query_and_its_answer_pass() {
        let q = query(0x1234, "db");
        let parsed = check_query(&q).unwrap();
        assert_eq!(parsed.id, 0x1234);
        assert_eq!(parsed.question, &q[12..]);
        assert_eq!(check_answer(&parsed, &answer(&q)), Ok(()));
        // EDNS: one additional record after the question.
        let mut edns = q.clone();
        edns[11] = 1;
        edns.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        assert!(check_query(&edns).is_ok());
    }

    #[test]
    fn what_is_not_a_query_or_its_answer_is_refused() {
        let q = query(7, "db");
        let mut response = q.clone();
        response[2] |= 0x80;
        assert_eq!(check_query(&response), Err(Rejected::NotAQuery));
        let mut two = q.clone();
        two[5] = 2;
        assert_eq!(check_query(&two), Err(Rejected::NotAQuery));
        let mut pointer = q.clone();
        pointer[12] = 0xc0;
        assert_eq!(check_query(&pointer), Err(Rejected::Question));
        let mut trailing = q.clone();
        trailing.push(0);
        assert_eq!(check_query(&trailing), Err(Rejected::Question));
        assert_eq!(check_query(&q[..q.len() - 1]), Err(Rejected::Question));
        assert_eq!(
            check_query(&vec![0; MAX_QUERY + 1]),
            Err(Rejected::Size(MAX_QUERY + 1))
        );
        let parsed = check_query(&q).unwrap();
        let mut other_id = answer(&q);
        other_id[1] ^= 1;
        assert_eq!(
            check_answer(&parsed, &other_id),
            Err(Rejected::NotTheAnswer)
        );
        assert_eq!(
            check_answer(&parsed, &answer(&query(7, "web"))),
            Err(Rejected::NotTheAnswer)
        );
        assert_eq!(check_answer(&parsed, &q), Err(Rejected::NotTheAnswer));
    }

    #[test]
    fn questions_are_read_and_answered() {
        let q = query(9, "Web.Net");
        let parsed = check_query(&q).unwrap();
        let read = super::question(&parsed);
        assert_eq!(read.name.as_deref(), Some("web.net"));
        assert_eq!((read.qtype, read.is_in()), (TYPE_A, true));
        let a = super::answer(
            &parsed,
            flags(&q),
            NOERROR,
            &["172.18.0.2".parse().unwrap()],
        );
        assert_eq!(check_answer(&parsed, &a), Ok(()));
        assert_eq!(&a[a.len() - 4..], &[172, 18, 0, 2]);
        assert_eq!(a[3] & 0xf, NOERROR);
        let v6: std::net::Ipv6Addr = "fd42:1::50".parse().unwrap();
        let aaaa = super::answer(&parsed, flags(&q), NOERROR, &[v6.into()]);
        assert_eq!(check_answer(&parsed, &aaaa), Ok(()));
        assert_eq!(&aaaa[aaaa.len() - 16..], &v6.octets());
        // Type AAAA, data length 16, after the name pointer, class and TTL.
        let rr = aaaa.len() - 16 - 10;
        assert_eq!(&aaaa[rr..rr + 2], &TYPE_AAAA.to_be_bytes());
        assert_eq!(&aaaa[rr + 8..rr + 10], &16u16.to_be_bytes());
        let nx = super::answer(&parsed, flags(&q), NXDOMAIN, &[]);
        assert_eq!((nx[3] & 0xf, nx[7]), (NXDOMAIN, 0));
        let odd = query(1, "a\x01b");
        assert_eq!(super::question(&check_query(&odd).unwrap()).name, None);
    }

    proptest! {
        /// Any checked query's question is read without panicking, and hx's own answer to it
        /// passes the check an answer must pass, with as many records as addresses.
        #[test]
        fn any_query_is_read_and_answered(msg in proptest::collection::vec(any::<u8>(), 12..300),
                                          n in 0usize..4, rcode in 0u8..16) {
            let mut msg = msg;
            // A header that passes, so the question's bytes are what varies.
            msg[2..12].copy_from_slice(&[0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            if let Ok(q) = check_query(&msg) {
                let _ = super::question(&q);
                // IPv4 and IPv6 records, alternately.
                let ips: Vec<std::net::IpAddr> = (0..n)
                    .map(|i| if i % 2 == 0 {
                        std::net::Ipv4Addr::new(10, 0, 0, i as u8).into()
                    } else {
                        std::net::Ipv6Addr::new(0xfd42, 0, 0, 0, 0, 0, 0, i as u16).into()
                    })
                    .collect();
                let a = super::answer(&q, flags(&msg), rcode, &ips);
                prop_assert_eq!(check_answer(&q, &a), Ok(()));
                prop_assert_eq!(u16_at(&a, 6) as usize, n);
                prop_assert_eq!(a[3] & 0xf, rcode);
            }
        }

        /// Any bytes: an answer without panicking; what passes is within the bounds, and its
        /// question lies inside the message.
        #[test]
        fn any_bytes_are_checked_without_panicking(msg in proptest::collection::vec(any::<u8>(), 0..700)) {
            if let Ok(q) = check_query(&msg) {
                prop_assert!(msg.len() <= MAX_QUERY);
                prop_assert!(q.question.len() >= 5 && q.question.len() <= 259);
                prop_assert_eq!(&msg[12..12 + q.question.len()], q.question);
                let _ = check_answer(&q, &msg);
            }
        }

        /// Queries for any name of plain labels pass; a mutated one either passes or is
        /// refused, never panics; an answer passes only with the query's id and question.
        #[test]
        fn mutated_queries(name in "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}", id in any::<u16>(),
                           at in 0usize..64, byte in any::<u8>()) {
            let q = query(id, &name);
            prop_assert!(check_query(&q).is_ok());
            let mut m = q.clone();
            if at < m.len() {
                m[at] = byte;
            }
            if let Ok(parsed) = check_query(&m) {
                let a = answer(&m);
                prop_assert_eq!(check_answer(&parsed, &a), Ok(()));
                let mut wrong = a.clone();
                wrong[0] ^= 0xff;
                prop_assert!(check_answer(&parsed, &wrong).is_err());
            }
        }
    }
}
