import { Etcd3 } from "etcd3";
const ep = process.argv[2]; const secs = Number(process.argv[3] ?? 5); const conc = Number(process.argv[4] ?? 1);
const client = new Etcd3({ hosts: ep });
await client.put("warm").value("x");
let n = 0; const lat = [];
const end = Date.now() + secs * 1000;
async function worker(i) { while (Date.now() < end) { const t = performance.now(); await client.put(`k${i}-${n % 1000}`).value("v".repeat(100)); lat.push(performance.now() - t); n++; } }
await Promise.all(Array.from({ length: conc }, (_, i) => worker(i)));
lat.sort((a, b) => a - b);
console.log(`${(n / secs).toFixed(0)} puts/s p50 ${lat[Math.floor(lat.length / 2)].toFixed(2)} ms p99 ${lat[Math.floor(lat.length * 0.99)].toFixed(2)} ms`);
client.close();
