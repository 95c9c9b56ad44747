//! The gRPC codec of `FleetIngest`: prost encoding with small initial buffers.
//!
//! tonic's default codec starts every stream with two 8 KiB buffers. A collector holds one stream
//! per clinic terminal — thousands, each sending a few KiB every interval — so those buffers were a
//! large share of its memory. These start at 1 KiB and grow on demand (a large message still
//! decodes; the size limit is enforced separately). Must never change the encoding itself.

use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial encode/decode buffer per stream.
const INITIAL_BUFFER: usize = 1024;
/// tonic's default yield threshold.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// A prost codec with small initial buffers; used by the generated client and server.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD))
    }
}
