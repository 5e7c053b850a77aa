//! A message's payload up to a write's data: the part both the plain codec
//! ([`super::LinkCodec`]) and sealed frames ([`super::seal`]) serialize
//! themselves, the data following uncopied (plain) or sealed apart (sealed).

use bytes::{Bytes, BytesMut};

use super::{LinkError, Message, PeerRequest};

/// A write request without its data, and the data; any other message as it is.
pub(super) fn split_write(msg: Message) -> (Message, Bytes) {
    match msg {
        Message::Request {
            id,
            body: PeerRequest::Write { pair, offset, data },
        } => (
            Message::Request {
                id,
                body: PeerRequest::Write {
                    pair,
                    offset,
                    data: Bytes::new(),
                },
            },
            data,
        ),
        other => (other, Bytes::new()),
    }
}

/// Appends the postcard form of `msg` (from [`split_write`]) to `dst`, as
/// if its write carried `data_len` bytes that follow: the payload up to
/// the data.
pub(super) fn serialize_head(
    msg: &Message,
    data_len: usize,
    dst: &mut BytesMut,
) -> Result<(), LinkError> {
    use bytes::BufMut;
    postcard::to_io(msg, (&mut *dst).writer()).map_err(LinkError::Encode)?;
    if data_len > 0 {
        // The data is the message's last field, so its postcard form ends
        // the payload: the length (a varint, 0 as serialized above), then
        // the bytes, which follow.
        if dst.last() != Some(&0) {
            return Err(LinkError::Encode(postcard::Error::SerdeSerCustom));
        }
        dst.truncate(dst.len() - 1);
        let mut len = data_len;
        while len >= 0x80 {
            dst.put_u8((len as u8) | 0x80);
            len >>= 7;
        }
        dst.put_u8(len as u8);
    }
    Ok(())
}
