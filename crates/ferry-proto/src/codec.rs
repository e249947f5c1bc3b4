//! Frames on the wire: a 4-byte big-endian length, then a postcard-encoded value.
//!
//! postcard is compact, has a stable wire format and encodes byte buffers
//! without per-byte overhead (with `serde_bytes`), which matters for file data.

use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::message::MAX_FRAME_LEN;
use crate::ProtoError;

/// Encodes `Out` values and decodes `In` values as length-delimited frames.
#[derive(Debug)]
pub struct FrameCodec<Out, In> {
    inner: LengthDelimitedCodec,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Out, In> Default for FrameCodec<Out, In> {
    fn default() -> Self {
        Self {
            inner: LengthDelimitedCodec::builder()
                .max_frame_length(MAX_FRAME_LEN)
                .new_codec(),
            _types: PhantomData,
        }
    }
}

impl<Out: Serialize, In> Encoder<Out> for FrameCodec<Out, In> {
    type Error = ProtoError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let bytes = postcard::to_stdvec(&item).map_err(|e| ProtoError::Codec(e.to_string()))?;
        self.inner
            .encode(Bytes::from(bytes), dst)
            .map_err(ProtoError::Io)
    }
}

impl<Out, In: DeserializeOwned> Decoder for FrameCodec<Out, In> {
    type Item = In;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ProtoError> {
        match self.inner.decode(src).map_err(ProtoError::Io)? {
            Some(frame) => postcard::from_bytes(&frame)
                .map(Some)
                .map_err(|e| ProtoError::Codec(e.to_string())),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Frame, FsOp, Request};

    #[test]
    fn frames_round_trip() {
        let mut codec = FrameCodec::<Frame<Request>, Frame<Request>>::default();
        let mut buf = BytesMut::new();
        let req = Frame {
            id: 7,
            body: Request::Fs {
                session: 3,
                op: FsOp::Write {
                    handle: 9,
                    offset: 1 << 40,
                    data: vec![1, 2, 3],
                },
            },
        };
        codec.encode(req, &mut buf).unwrap();
        let back = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(back.id, 7);
        match back.body {
            Request::Fs {
                session: 3,
                op:
                    FsOp::Write {
                        handle: 9,
                        offset,
                        data,
                    },
            } => {
                assert_eq!(offset, 1 << 40);
                assert_eq!(data, [1, 2, 3]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut codec = FrameCodec::<Frame<Request>, Frame<Request>>::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 0xff, 0xff, 0xff][..]);
        assert!(codec.decode(&mut buf).is_err());
    }
}
