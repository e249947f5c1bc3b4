//! The internal protocol's frame decoder, on both ends: what a server
//! reads from an edge or a peer, and what an edge reads from a server.
#![no_main]

use bytes::BytesMut;
use ferry_proto::codec::FrameCodec;
use ferry_proto::message::{Frame, Request, Response};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut server = FrameCodec::<Frame<Response>, Frame<Request>>::default();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = server.decode(&mut buf) {}

    let mut edge = FrameCodec::<Frame<Request>, Frame<Response>>::default();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = edge.decode(&mut buf) {}
});
