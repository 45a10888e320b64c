"""Workers: the archive job, the dispatcher, the poller, storage backends and the downloader."""
