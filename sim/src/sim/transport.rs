//! Bytes on the simulator's side of the socket: WebSocket messages, the
//! 3-byte length frames inside them, and (after the handshake) Noise-
//! encrypted binary nodes with a counter per direction.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wacore::noise::NoiseCipher;
use wacore_binary::Node;
use wacore_binary::consts::WA_CONN_HEADER;
use wacore_noise::framing::{FrameDecoder, encode_frame};

pub struct Frames {
    ws: WebSocketStream<TcpStream>,
    decoder: FrameDecoder,
    saw_header: bool,
}

impl Frames {
    pub fn new(ws: WebSocketStream<TcpStream>) -> Frames {
        Frames {
            ws,
            decoder: FrameDecoder::new(),
            saw_header: false,
        }
    }

    /// The next length-prefixed frame from the client.
    pub async fn next_frame(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(frame) = self.decoder.decode_frame() {
                return Ok(frame.to_vec());
            }
            let message = self
                .ws
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("client closed the socket"))??;
            let WsMessage::Binary(bytes) = message else {
                if let WsMessage::Close(_) = message {
                    anyhow::bail!("client closed the socket");
                }
                continue;
            };
            let mut bytes = &bytes[..];
            // The very first bytes of a connection carry the protocol header.
            if !self.saw_header && bytes.starts_with(&WA_CONN_HEADER) {
                bytes = &bytes[WA_CONN_HEADER.len()..];
            }
            self.saw_header = true;
            self.decoder.feed(bytes);
        }
    }

    pub async fn send_frame(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let framed = encode_frame(payload, None)?;
        self.ws.send(WsMessage::Binary(framed.into())).await?;
        Ok(())
    }

    pub async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Encrypted node I/O once the handshake is done.
pub struct NodeChannel {
    frames: Frames,
    read: NoiseCipher,
    write: NoiseCipher,
    read_counter: u32,
    write_counter: u32,
}

impl NodeChannel {
    pub fn new(frames: Frames, read: NoiseCipher, write: NoiseCipher) -> NodeChannel {
        NodeChannel {
            frames,
            read,
            write,
            read_counter: 0,
            write_counter: 0,
        }
    }

    pub async fn send(&mut self, node: &Node) -> anyhow::Result<()> {
        // `marshal` writes the leading "not compressed" flag byte itself.
        let plain = wacore_binary::marshal::marshal(node)?;
        let sealed = self
            .write
            .encrypt_with_counter(self.write_counter, &plain)?;
        self.write_counter += 1;
        self.frames.send_frame(&sealed).await
    }

    pub async fn recv(&mut self) -> anyhow::Result<Node> {
        let mut frame = self.frames.next_frame().await?;
        self.read
            .decrypt_in_place_with_counter(self.read_counter, &mut frame)?;
        self.read_counter += 1;
        let unpacked = wacore_binary::util::unpack(&frame)?;
        let node = wacore_binary::marshal::unmarshal_ref(&unpacked)?;
        Ok(node.to_owned())
    }

    pub async fn close(&mut self) {
        self.frames.close().await;
    }
}
