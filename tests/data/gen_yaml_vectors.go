// Reference-vector generator for the yaml.v3-compatible header writer
// (tests/test_tracev2.py).  Development aid only: blis never needs Go.
// Regenerate with (Debian: golang-go, golang-gopkg-yaml.v3-dev)
//
//	cd tests/data && GO111MODULE=off GOPATH=/usr/share/gocode go run gen_yaml_vectors.go > yaml_v3_vectors.json
//
// The structs mirror the TraceV2 header schema (spec/04-workload-io.md §5.1).
package main

import (
	"encoding/json"
	"math"
	"os"

	"gopkg.in/yaml.v3"
)

type Server struct {
	Type                 string  `yaml:"type,omitempty"`
	Model                string  `yaml:"model,omitempty"`
	TensorParallel       int     `yaml:"tensor_parallel,omitempty"`
	MaxNumSeqs           int     `yaml:"max_num_seqs,omitempty"`
	BlockSize            int     `yaml:"block_size,omitempty"`
	GPUMemoryUtilization float64 `yaml:"gpu_memory_utilization,omitempty"`
	MaxModelLen          int64   `yaml:"max_model_len,omitempty"`
}
type Network struct {
	MeasuredRTTMs float64 `yaml:"measured_rtt_ms,omitempty"`
}
type SLO struct {
	TTFTMs float64 `yaml:"ttft_ms,omitempty"`
	ITLMs  float64 `yaml:"itl_ms,omitempty"`
	E2EMs  float64 `yaml:"e2e_ms,omitempty"`
}
type Tier struct {
	Type                   string  `yaml:"type"`
	RootDir                string  `yaml:"root_dir"`
	NReadThreads           int64   `yaml:"n_read_threads"`
	NWriteThreads          int64   `yaml:"n_write_threads"`
	Locality               string  `yaml:"locality,omitempty"`
	EnableKVEvents         bool    `yaml:"enable_kv_events"`
	DirectIO               bool    `yaml:"direct_io"`
	DeviceClass            string  `yaml:"device_class,omitempty"`
	ReadBandwidth          float64 `yaml:"read_bandwidth"`
	WriteBandwidth         float64 `yaml:"write_bandwidth"`
	BaseLatency            float64 `yaml:"base_latency"`
	SaturationQueueDepth   int64   `yaml:"saturation_queue_depth"`
	SingleTransferFraction float64 `yaml:"single_transfer_fraction"`
	LatencyJitterStddev    float64 `yaml:"latency_jitter_stddev"`
}
type KVOffload struct {
	CPUBytesToUse          int64  `yaml:"cpu_bytes_to_use"`
	PerBlockBytes          int64  `yaml:"per_block_bytes"`
	BlockSize              int64  `yaml:"block_size"`
	BlocksPerChunk         int64  `yaml:"blocks_per_chunk"`
	TokensPerHash          int64  `yaml:"tokens_per_hash"`
	EvictionPolicy         string `yaml:"eviction_policy"`
	OffloadPromptOnly      bool   `yaml:"offload_prompt_only"`
	SelfDescribingKVEvents bool   `yaml:"self_describing_kv_events"`
	Tiers                  []Tier `yaml:"secondary_tiers,omitempty"`
}
type Observed struct {
	Source         string  `yaml:"source"`
	HitRate        float64 `yaml:"hit_rate"`
	BlockHits      int64   `yaml:"block_hits"`
	BlockQueries   int64   `yaml:"block_queries"`
	ReadTimeTotal  float64 `yaml:"read_time_total,omitempty"`
	WriteTimeTotal float64 `yaml:"write_time_total,omitempty"`
	VLLMCommit     string  `yaml:"vllm_commit,omitempty"`
}
type Header struct {
	Version              int            `yaml:"trace_version"`
	TimeUnit             string         `yaml:"time_unit"`
	CreatedAt            string         `yaml:"created_at,omitempty"`
	Mode                 string         `yaml:"mode"`
	WarmUpRequests       int            `yaml:"warm_up_requests"`
	WorkloadSeed         *int64         `yaml:"workload_seed,omitempty"`
	WorkloadSpec         string         `yaml:"workload_spec,omitempty"`
	SessionContextGrowth string         `yaml:"session_context_growth,omitempty"`
	Server               *Server        `yaml:"server,omitempty"`
	Network              *Network       `yaml:"network,omitempty"`
	Goodput              map[string]SLO `yaml:"goodput_slo_targets,omitempty"`
	KVOffload            *KVOffload     `yaml:"kv_offload,omitempty"`
	Observed             *Observed      `yaml:"observed_kv_metrics,omitempty"`
}

func main() {
	seed := int64(-7)
	out := map[string]interface{}{}
	var headers []map[string]string
	add := func(name string, h Header) {
		b, err := yaml.Marshal(&h)
		if err != nil {
			panic(err)
		}
		headers = append(headers, map[string]string{"name": name, "yaml": string(b)})
	}
	add("minimal", Header{Version: 3, TimeUnit: "microseconds", Mode: "generated"})
	add("empty", Header{})
	add("full", Header{Version: 3, TimeUnit: "us", CreatedAt: "2025-01-02T03:04:05Z", Mode: "real", WarmUpRequests: 5,
		WorkloadSeed: &seed, WorkloadSpec: "preset:chatbot", SessionContextGrowth: "accumulate",
		Server:  &Server{Type: "vllm", Model: "meta-llama/Llama-3.1-8B-Instruct", TensorParallel: 2, MaxNumSeqs: 256, BlockSize: 16, GPUMemoryUtilization: 0.9, MaxModelLen: 131072},
		Network: &Network{MeasuredRTTMs: 1.5},
		Goodput: map[string]SLO{"standard": {TTFTMs: 200, E2EMs: 5000}, "critical": {TTFTMs: 100, ITLMs: 0.00001}, "batch": {}},
		KVOffload: &KVOffload{CPUBytesToUse: 1 << 34, PerBlockBytes: 131072, BlockSize: 16, BlocksPerChunk: 4, TokensPerHash: 16, EvictionPolicy: "lru", OffloadPromptOnly: true,
			Tiers: []Tier{{Type: "fs", RootDir: "/tmp/kv", NReadThreads: 4, NWriteThreads: 2, Locality: "local", EnableKVEvents: true, ReadBandwidth: 2500.5, WriteBandwidth: 1e6, BaseLatency: 12, SaturationQueueDepth: 1, SingleTransferFraction: 1, LatencyJitterStddev: 0},
				{Type: "fs", RootDir: "", DeviceClass: "nvme", ReadBandwidth: 1e21, WriteBandwidth: 1e-7, BaseLatency: 123456789}}},
		Observed: &Observed{Source: "tiered", HitRate: 0.25, BlockHits: 10, BlockQueries: 40, ReadTimeTotal: 1.25, VLLMCommit: "abc123"},
	})
	add("empty_blocks", Header{Version: 2, TimeUnit: "microseconds", Mode: "replayed", Server: &Server{}, Network: &Network{}, KVOffload: &KVOffload{}, Observed: &Observed{}})
	out["headers"] = headers

	strs := []string{"", "abc", "microseconds", "preset:chatbot", "a: b", "a #b", "#x", "-x", "- x", "x-", "true", "True", "yes", "no", "on", "off", "y", "n", "null", "~", "Null",
		"123", "1.5", "1e3", "0x1F", "0o17", ".inf", "-.inf", ".nan", "1:20", "2025-01-02T03:04:05Z", "2025-01-02", "2025-01-02 03:04:05",
		" lead", "trail ", "it's", "say \"hi\"", "back\\slash", "tab\there", "a,b", "[x]", "{x}", "&a", "*a", "!t", "|x", ">x", "'q", "\"q", "%p", "@at", "`bt", "?q", "? q", "x?", ":x", "x:", "/path/to/x.yaml",
		"meta-llama/Llama-3.1-8B-Instruct", "accumulate", "ünïcode", "1_000", "+5", "-5", "0.", "1e+06", "=", "<<", "a\u0085b", "a\x01b", "1.0.0", "v1", "ON", "Off", "NO", "Y",
		"0b101", "08", "1__0", "--", "---", "...", "a|b", "a>b"}
	var sy []map[string]string
	for _, s := range strs {
		b, _ := yaml.Marshal(map[string]string{"k": s})
		sy = append(sy, map[string]string{"s": s, "yaml": string(b)})
	}
	out["strings"] = sy
	floats := []float64{0, 1, -1, 0.5, 100, 1e6, 123456, 1234567, 1e20, 1e21, 1e-4, 1e-5, 0.1, 1.0 / 3, 2.5e-7, math.Inf(1), math.Inf(-1), math.NaN(), 5e-324, 1.7976931348623157e308, -0.0, 99999.99999999999}
	var fy []map[string]interface{}
	for _, f := range floats {
		b, _ := yaml.Marshal(map[string]float64{"k": f})
		bits := math.Float64bits(f)
		fy = append(fy, map[string]interface{}{"bits": bits, "yaml": string(b)})
	}
	out["floats"] = fy
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	_ = enc.Encode(out)
}
