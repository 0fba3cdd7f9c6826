// ipx with its defaults, serving the files of one folder: `node server.mjs <folder> <port>`.
import { createServer } from "node:http";
import { createIPX, createIPXNodeServer, ipxFSStorage } from "ipx";

const [folder, port] = process.argv.slice(2);
const ipx = createIPX({ storage: ipxFSStorage({ dir: folder }) });
createServer(createIPXNodeServer(ipx)).listen(Number(port), "127.0.0.1", () => {
  console.log(`ipx listening on 127.0.0.1:${port}`);
});
