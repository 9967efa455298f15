//! A small CRI v1 image-service client over containerd's unix socket (tonic). Debian 12 has no
//! crictl; the proto is the minimal subset in `tests/proto/cri.proto`.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};

#[allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
pub mod pb {
    tonic::include_proto!("runtime.v1");
}

use pb::image_service_client::ImageServiceClient;
use pb::{ImageSpec, ImageStatusRequest, PullImageRequest, RemoveImageRequest};

pub struct Cri {
    rt: tokio::runtime::Runtime,
    client: ImageServiceClient<tonic::transport::Channel>,
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_owned(),
        annotations: Default::default(),
    })
}

impl Cri {
    pub fn connect(socket: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path: PathBuf = socket.to_owned();
        let channel = rt
            .block_on(async move {
                // The URI is ignored: every connection goes to the unix socket.
                Endpoint::try_from("http://[::]:50051")?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }))
                    .await
            })
            .expect("connect to the CRI socket");
        Cri {
            rt,
            client: ImageServiceClient::new(channel),
        }
    }

    /// PullImage; the error is the gRPC status message (containerd's error text).
    pub fn pull(&mut self, image: &str) -> Result<String, String> {
        let req = PullImageRequest {
            image: spec(image),
            auth: None,
        };
        self.rt
            .block_on(self.client.pull_image(req))
            .map(|r| r.into_inner().image_ref)
            .map_err(|s| s.message().to_owned())
    }

    /// ImageStatus: the image id and repo tags, or None if containerd does not know it.
    pub fn status(&mut self, image: &str) -> Result<Option<pb::Image>, String> {
        let req = ImageStatusRequest {
            image: spec(image),
            verbose: false,
        };
        self.rt
            .block_on(self.client.image_status(req))
            .map(|r| r.into_inner().image)
            .map_err(|s| s.message().to_owned())
    }

    pub fn remove(&mut self, image: &str) -> Result<(), String> {
        let req = RemoveImageRequest { image: spec(image) };
        self.rt
            .block_on(self.client.remove_image(req))
            .map(|_| ())
            .map_err(|s| s.message().to_owned())
    }
}
