// Reference-vector generator for the Go math/rand port (tests/test_gorand.py)
// and the workload samplers (tests/test_workload_synthesis.py).
//
// Development aid only: blis never needs Go.  Regenerate with
//
//	cd tests/data && GO111MODULE=off go run gen_reference_vectors.go
//
// which rewrites gorand_vectors.json and sampler_vectors.json.  The samplers
// here are written from the workload spec (spec/04-workload-io.md §4.3-4.4),
// using only math/rand draws and the math package, so the Python port is
// checked against Go's own floating-point routines.
package main

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand"
	"os"
	"sort"
	"strconv"
)

func u64s(x uint64) string { return strconv.FormatUint(x, 10) }

type seedVectors struct {
	Seed       int64              `json:"seed"`
	Int63      []int64            `json:"int63"`
	Uint64     []string           `json:"uint64"`
	Int31      []int32            `json:"int31"`
	Int31n     map[string][]int32 `json:"int31n"`
	Intn128000 []int              `json:"intn_128000"`
	Int63n     map[string][]int64 `json:"int63n"`
	Float64    []float64          `json:"float64"`
	Norm       []float64          `json:"norm_float64"`
	Exp        []float64          `json:"exp_float64"`
	Perm       []int              `json:"perm_10"`
	Shuffle    []int              `json:"shuffle_12"`
	Mixed      []string           `json:"mixed"`
}

func vectorsFor(seed int64) seedVectors {
	v := seedVectors{Seed: seed, Int31n: map[string][]int32{}, Int63n: map[string][]int64{}}
	r := rand.New(rand.NewSource(seed))
	for i := 0; i < 8; i++ {
		v.Int63 = append(v.Int63, r.Int63())
	}
	r = rand.New(rand.NewSource(seed))
	for i := 0; i < 5; i++ {
		v.Uint64 = append(v.Uint64, u64s(r.Uint64()))
	}
	for i := 0; i < 5; i++ {
		v.Int31 = append(v.Int31, r.Int31())
	}
	for _, n := range []int32{1, 2, 3, 10, 1 << 30, 128000, math.MaxInt32, 1<<30 + 1} {
		key := strconv.Itoa(int(n))
		for i := 0; i < 6; i++ {
			v.Int31n[key] = append(v.Int31n[key], r.Int31n(n))
		}
	}
	for i := 0; i < 20; i++ {
		v.Intn128000 = append(v.Intn128000, r.Intn(128000))
	}
	for _, n := range []int64{1, 5, 1 << 40, 1000000000000000003, math.MaxInt64, 1<<62 + 1} {
		key := strconv.FormatInt(n, 10)
		for i := 0; i < 6; i++ {
			v.Int63n[key] = append(v.Int63n[key], r.Int63n(n))
		}
	}
	for i := 0; i < 10; i++ {
		v.Float64 = append(v.Float64, r.Float64())
	}
	for i := 0; i < 20; i++ {
		v.Norm = append(v.Norm, r.NormFloat64())
	}
	for i := 0; i < 20; i++ {
		v.Exp = append(v.Exp, r.ExpFloat64())
	}
	v.Perm = r.Perm(10)
	s := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	r.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	v.Shuffle = s
	// Intn with n > 2^31-1 goes through Int63n.
	v.Mixed = append(v.Mixed, strconv.Itoa(r.Intn(1<<40+7)), strconv.Itoa(r.Intn(7)))
	return v
}

// fnvFloats hashes the IEEE bits of xs, little-endian, with FNV-1a 64.
type hasher struct{ h uint64 }

func newHasher() *hasher { return &hasher{h: 14695981039346656037} }
func (h *hasher) add(x uint64) {
	for b := 0; b < 8; b++ {
		h.h ^= (x >> (8 * uint(b))) & 0xff
		h.h *= 1099511628211
	}
}

type bulk struct {
	Seed          int64    `json:"seed"`
	SkipN         int      `json:"skip_intn_128000"`
	Int63After    []int64  `json:"int63_after_skip"`
	NormCount     int      `json:"norm_count"`
	NormHash      string   `json:"norm_bits_fnv"`
	ExpCount      int      `json:"exp_count"`
	ExpHash       string   `json:"exp_bits_fnv"`
	Int63AfterAll []int64  `json:"int63_after_all"`
	FnvNames      []string `json:"fnv_names"`
	FnvValues     []int64  `json:"fnv_values"`
}

func main() {
	var all []seedVectors
	for _, s := range []int64{1, 42, 0, -1, 2147483647, -2147483647, 89482311,
		7079132663427089781, -6855704586828941970, math.MinInt64, math.MaxInt64} {
		all = append(all, vectorsFor(s))
	}
	r := rand.New(rand.NewSource(42))
	b := bulk{Seed: 42, SkipN: 1000003}
	for i := 0; i < b.SkipN; i++ {
		r.Intn(128000)
	}
	for i := 0; i < 3; i++ {
		b.Int63After = append(b.Int63After, r.Int63())
	}
	b.NormCount, b.ExpCount = 2000000, 2000000
	h := newHasher()
	for i := 0; i < b.NormCount; i++ {
		h.add(math.Float64bits(r.NormFloat64()))
	}
	b.NormHash = u64s(h.h)
	h = newHasher()
	for i := 0; i < b.ExpCount; i++ {
		h.add(math.Float64bits(r.ExpFloat64()))
	}
	b.ExpHash = u64s(h.h)
	for i := 0; i < 3; i++ {
		b.Int63AfterAll = append(b.Int63AfterAll, r.Int63())
	}
	for _, name := range []string{"", "workload-gen", "router", "kv-offload", "instance_0", "prefill-router"} {
		f := fnv.New64a()
		f.Write([]byte(name))
		b.FnvNames = append(b.FnvNames, name)
		b.FnvValues = append(b.FnvValues, int64(f.Sum64()))
	}
	out, _ := os.Create("gorand_vectors.json")
	enc := json.NewEncoder(out)
	enc.SetIndent("", " ")
	_ = enc.Encode(map[string]interface{}{"seeds": all, "bulk": b})
	_ = out.Close()
	writeSamplerVectors()
}

// ---- samplers, from the spec ----

func iatPoisson(r *rand.Rand, rate float64) int64 {
	v := int64(r.ExpFloat64() / rate)
	if v < 1 {
		return 1
	}
	return v
}

func gammaDraw(r *rand.Rand, shape, scale float64) float64 {
	if shape < 1 {
		u := r.Float64()
		return gammaDraw(r, shape+1, scale) * math.Pow(u, 1/shape)
	}
	d := shape - 1.0/3.0
	c := 1 / math.Sqrt(9*d)
	for {
		var x, v float64
		for {
			x = r.NormFloat64()
			v = 1 + c*x
			if v > 0 {
				break
			}
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*(x*x)*(x*x) {
			return d * v * scale
		}
		if math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v * scale
		}
	}
}

func atLeast1(v int64) int64 {
	if v < 1 {
		return 1
	}
	return v
}

func weibullK(cv float64) float64 {
	cvOf := func(k float64) float64 {
		g1 := math.Gamma(1 + 1/k)
		return math.Sqrt(math.Gamma(1+2/k)/(g1*g1) - 1)
	}
	lo, hi := 0.1, 100.0
	for i := 0; i < 100; i++ {
		mid := (lo + hi) / 2
		c := cvOf(mid)
		if math.Abs(c-cv) < 0.001 {
			return mid
		}
		if c > cv {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

func roundLen(v float64) int { return int(math.Round(v)) }

type samplerCase struct {
	Name   string             `json:"name"`
	Kind   string             `json:"kind"` // "arrival" or "length"
	Type   string             `json:"type"`
	Params map[string]float64 `json:"params"`
	Rate   float64            `json:"rate_per_us,omitempty"`
	Seed   int64              `json:"seed"`
	Values []int64            `json:"values"`
	Next   int64              `json:"int63_after"`
}

func writeSamplerVectors() {
	const n = 2000
	var cases []samplerCase
	add := func(c samplerCase, draw func(r *rand.Rand) int64) {
		r := rand.New(rand.NewSource(c.Seed))
		for i := 0; i < n; i++ {
			c.Values = append(c.Values, draw(r))
		}
		c.Next = r.Int63()
		cases = append(cases, c)
	}
	rate := 8.0 / 1e6
	add(samplerCase{Name: "poisson", Kind: "arrival", Type: "poisson", Rate: rate, Seed: 3, Params: map[string]float64{}},
		func(r *rand.Rand) int64 { return iatPoisson(r, rate) })
	for _, cv := range []float64{0.5, 2.0, 3.5} {
		cv := cv
		shape, scale := 1/(cv*cv), (1/rate)*cv*cv
		add(samplerCase{Name: "gamma_cv_" + strconv.FormatFloat(cv, 'g', -1, 64), Kind: "arrival", Type: "gamma", Rate: rate, Seed: 4,
			Params: map[string]float64{"cv": cv}},
			func(r *rand.Rand) int64 { return atLeast1(int64(gammaDraw(r, shape, scale))) })
	}
	add(samplerCase{Name: "gamma_explicit", Kind: "arrival", Type: "gamma", Rate: rate, Seed: 5,
		Params: map[string]float64{"shape": 0.7, "scale": 90000}},
		func(r *rand.Rand) int64 { return atLeast1(int64(gammaDraw(r, 0.7, 90000))) })
	for _, cv := range []float64{0.5, 1.0, 2.5} {
		cv := cv
		k := weibullK(cv)
		scale := (1 / rate) / math.Gamma(1+1/k)
		add(samplerCase{Name: "weibull_cv_" + strconv.FormatFloat(cv, 'g', -1, 64), Kind: "arrival", Type: "weibull", Rate: rate, Seed: 6,
			Params: map[string]float64{"cv": cv}},
			func(r *rand.Rand) int64 {
				u := r.Float64()
				if u == 0 {
					u = math.SmallestNonzeroFloat64
				}
				return atLeast1(int64(scale * math.Pow(-math.Log(u), 1/k)))
			})
	}
	add(samplerCase{Name: "gaussian", Kind: "length", Type: "gaussian", Seed: 7,
		Params: map[string]float64{"mean": 512, "std_dev": 256, "min": 16, "max": 2048}},
		func(r *rand.Rand) int64 {
			v := r.NormFloat64()*256 + 512
			c := math.Min(2048, math.Max(16, v))
			return atLeast1(int64(roundLen(c)))
		})
	add(samplerCase{Name: "exponential", Kind: "length", Type: "exponential", Seed: 8,
		Params: map[string]float64{"mean": 300, "min": 5, "max": 1500}},
		func(r *rand.Rand) int64 {
			res := roundLen(r.ExpFloat64() * 300)
			if res < 5 {
				res = 5
			}
			if res > 1500 {
				res = 1500
			}
			return atLeast1(int64(res))
		})
	add(samplerCase{Name: "pareto_lognormal", Kind: "length", Type: "pareto_lognormal", Seed: 9,
		Params: map[string]float64{"alpha": 1.5, "xm": 100, "mu": 5.5, "sigma": 1.2, "mix_weight": 0.3}},
		func(r *rand.Rand) int64 {
			var val float64
			if r.Float64() < 0.3 {
				u := r.Float64()
				if u == 0 {
					u = math.SmallestNonzeroFloat64
				}
				val = 100 / math.Pow(u, 1/1.5)
			} else {
				val = math.Exp(5.5 + 1.2*r.NormFloat64())
			}
			if math.IsInf(val, 0) || math.IsNaN(val) {
				return 1
			}
			return atLeast1(int64(roundLen(val)))
		})
	add(samplerCase{Name: "lognormal", Kind: "length", Type: "lognormal", Seed: 10,
		Params: map[string]float64{"mu": 6.0, "sigma": 0.8, "min": 20, "max": 4000}},
		func(r *rand.Rand) int64 {
			val := math.Exp(6.0 + 0.8*r.NormFloat64())
			res := roundLen(val)
			if res < 20 {
				res = 20
			}
			if res > 4000 {
				res = 4000
			}
			return atLeast1(int64(res))
		})
	pdf := map[int]float64{10: 0.2, 50: 0.5, 200: 0.25, 1000: 0.05, 7: 0}
	keys := []int{}
	for k := range pdf {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	total := 0.0
	for _, k := range keys {
		total += pdf[k]
	}
	var vals []int
	var cdf []float64
	cum := 0.0
	for _, k := range keys {
		if pdf[k] <= 0 {
			continue
		}
		cum += pdf[k] / total
		vals = append(vals, k)
		cdf = append(cdf, cum)
	}
	cdf[len(cdf)-1] = 1
	add(samplerCase{Name: "empirical", Kind: "length", Type: "empirical", Seed: 11,
		Params: map[string]float64{"10": 0.2, "50": 0.5, "200": 0.25, "1000": 0.05, "7": 0}},
		func(r *rand.Rand) int64 {
			u := r.Float64()
			i := sort.SearchFloat64s(cdf, u)
			if i >= len(vals) {
				i = len(vals) - 1
			}
			return int64(vals[i])
		})
	out, _ := os.Create("sampler_vectors.json")
	enc := json.NewEncoder(out)
	_ = enc.Encode(map[string]interface{}{"n": n, "cases": cases})
	_ = out.Close()
}
