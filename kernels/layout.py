"""Integer layouts shared by the engine kernels and their Python driver.

The simulator state is a handful of numpy arrays.  Per-request state is one
int64 matrix ``rq[field, request]`` (each row a contiguous column: struct of
arrays); per-instance scalars are ``ins[instance, field]``; run configuration
is ``cfg[field]`` (int64) and ``cfgf[field]`` (float64).  The constants below
name the rows/columns.  Codes for policies are listed here too, so that
kernels can branch on them.
"""

# ---- request fields: rq[R_*, r]
R_ARRIVAL = 0        # original arrival time (us)
R_ILEN = 1           # input length incl. prefix
R_OLEN = 2           # oracle output length
R_PLEN = 3           # shared prefix length
R_GROUP = 4          # prefix group code
R_MAXOUT = 5         # MaxOutputLen (auto-filled at enqueue)
R_DEADLINE = 6       # absolute deadline (0 = none)
R_PRIO = 7           # vLLM priority (lower = more urgent), set at enqueue
R_ID = 8             # numeric id (name request_<id>)
R_IDKEY = 9          # id digits left-aligned to 18 digits (byte-wise order of names)
R_IDDIG = 10         # number of digits of the id
R_CSEED = 11         # content seed (uint64 bits)
R_STATE = 12         # ST_* below
R_PI = 13            # ProgressIndex
R_NNEW = 14          # NumNewTokens this step
R_COMPUTED = 15      # ComputedTokens
R_TTFTSET = 16       # TTFT latch
R_FIRST = 17         # FirstTokenTime (duration, us); -1 = never recorded
R_ITLSUM = 18        # sum of the current ITL list (us)
R_ITLCNT = 19        # len(ITL)
R_ITLHEAD = 20       # ITL arena chunk list head (-1 none)
R_ITLTAIL = 21       # ITL arena chunk list tail
R_SCHED = 22         # scheduling delay at (last) admission; -1 = never admitted
R_SCHEDSTEP = 23     # step index at (last) admission
R_FINSTEP = 24       # step index at completion
R_E2E = 25           # E2E (us); -1 = not completed
R_CAPPED = 26        # length-capped flag
R_INST = 27          # instance handling the request (-1 none)
R_SLOT = 28          # KV block-list slot (-1 = owns no blocks)
R_OUTDONE = 29       # output tokens counted at completion
R_SLO = 30           # SLO class code
R_TENANT = 31        # tenant code
R_ROUTED_AT = 32     # time the request was injected into its instance
R_ITLMEAN_DIV = 33   # divisor used for itl_ms (set at completion)
R_SCHEDKEY = 34      # static scheduler sort key (see blis.schedulers)
# -- closed-loop sessions (blis.workload.sessions): context parents and terminal ticks
R_CTXP = 35          # context parent row (-1 none): the first R_CTXLEN tokens are the parent's tokens
R_CTXLEN = 36        # tokens taken from the context parent (parent input then its output)
R_DONE_TICK = 37     # tick of the terminal event (completion: step end = BLIS's OnRequestDone tick); -1
NRF = 38

# ---- request states
ST_PENDING = 0       # not yet at an instance
ST_QUEUED = 1
ST_RUNNING = 2
ST_COMPLETED = 3
ST_TIMED_OUT = 4
ST_DROPPED = 5       # dropped unservable at enqueue
ST_REJECTED = 6      # rejected by admission
ST_ROUTE_REJECTED = 7
ST_GW_REJECTED = 8    # flow control: rejected by the gateway queue
ST_GW_SHED = 9        # flow control: displaced from the gateway queue
ST_GW_EXPIRED = 10    # flow control: TTL expired in the gateway queue
ST_GW_QUEUED = 11     # flow control: still in the gateway queue at the horizon

# ---- per-instance scalars: ins[i, I_*]
I_CLOCK = 0
I_STEP_PENDING = 1
I_STEP_COUNT = 2
I_HLEN = 3           # event heap length
I_SEQ = 4            # event seq counter
I_WQH = 5            # wait queue head index
I_WQT = 6            # wait queue tail index (exclusive)
I_BLEN = 7           # running batch length
I_FREE_CNT = 8
I_FREE_HEAD = 9
I_FREE_TAIL = 10
I_HITS = 11
I_MISSES = 12
I_COMPLETED = 13
I_DROPPED = 14
I_TIMED_OUT = 15
I_CAPPED = 16
I_PREEMPT = 17
I_ALLOC_FAIL = 18
I_IN_TOKENS = 19
I_OUT_TOKENS = 20
I_LEFT_MAX = 21      # latest RequestLeft time <= horizon
I_INFLIGHT = 22
I_SLOT_FREE_N = 23
I_TOTAL_BLOCKS = 24
I_PEAK_USED = 25
I_ITLH_N = 26        # distinct keys in the ITL histogram table
I_WQ_SAMPLE_SUM = 27 # sum of wait-queue lengths sampled each step
I_WQ_SAMPLES = 28
I_SNAP_T_QD = 29     # snapshot refresh times and cached values (routing)
I_SNAP_QD = 30
I_SNAP_T_BS = 31
I_SNAP_BS = 32
I_SNAP_T_KV = 33
I_SNAP_KV_USED = 34
I_SNAP_T_PRE = 35
I_SNAP_PRE = 36
I_INJECTED = 37
I_EVENTS = 38        # instance events executed (for benchmarks)
I_SLOT_OVF = 39      # appends refused because a request's block list was full (must stay 0)
I_SPARE_40 = 40
I_SPARE_41 = 41
I_SPARE_42 = 42
I_CPU_EVICT = 43     # CPU tier: LRU evictions
I_CPU_MIRROR = 44    # CPU tier: blocks stored by MirrorToCPU
I_CPU_HITS = 45      # CPU tier: blocks reloaded to the GPU
I_CPU_MISSES = 46    # CPU tier: failed GPU allocations with nothing reloaded
I_PENDING_LAT = 47   # transfer latency to add to the next step (us)
I_CLOG_ON = 48       # log hash-table changes for the delayed cache snapshot (1/0)
I_CLOG_N = 49        # entries in the change log
I_CLOG_OVF = 50      # the log overflowed: copy the whole table at the next refresh
# -- autoscaling: instance lifecycle (LIFE_* below; 0 = Active, so runs without
#    node pools/autoscaler need no initialisation)
I_LIFE = 51          # lifecycle state LIFE_*
I_LIFE_T = 52        # time of the last lifecycle change made by the kernel (Draining -> Terminated)
NIF = 53

# ---- run configuration: cfg[C_*]
C_BLOCK = 0
C_MAX_SEQS = 1
C_BUDGET = 2         # max-num-batched-tokens
C_THRESHOLD = 3      # long-prefill-token-threshold
C_MML = 4            # max-model-len (0 = unlimited)
C_HORIZON = 5
C_SCHED = 6          # 1 = reorder the wait queue by R_SCHEDKEY each step, 0 = FCFS
C_PREEMPT = 7        # PREEMPT_* below
C_BACKEND = 8        # latency backend code
C_OTPT = 9           # OutputTokenProcessingTime (us)
C_POST = 10          # PostDecodeFixedOverhead (us)
C_NINST = 11
C_ROUTING = 12       # ROUTE_* below
C_ADMISSION = 13     # ADMIT_* below
C_ADMIT_LAT = 14
C_ROUTE_LAT = 15
C_SNAP_INTERVAL = 16
C_NREQ = 17
C_BF_NO_CHUNK = 18   # batch formation: admit a prefill only if it fits whole (1) or chunk it (0)
C_BF_MAX_ADMIT = 19  # batch formation: max new admissions per step (0 = unlimited)
C_CPU_BLOCKS = 20    # CPU KV tier capacity in blocks (0 = single tier)
C_XFER_BASE = 21     # CPU->GPU transfer base latency per block (us)
C_CACHE_DELAY = 22   # --cache-signal-delay (us); 0 = routing reads live caches
C_PA_CAP = 23        # prefix-affinity router index capacity (blocks per instance)
C_MAX_PRI = 24       # max SLO priority (cluster convention) = priority + vLLM priority
C_TS_THRESHOLD = 25  # tier-shed overload threshold (EffectiveLoad)
C_TS_MIN_PRI = 26    # tier-shed min admitted priority
C_TENANT_CAP = 27    # tenant budgets: total capacity (instances x max-num-seqs); 0 = off
C_TRACE = 28         # decision tracing on (1) / off (0)
C_FIN_HOOK = 29      # 1 = hand terminal requests to Python after each instance event (NEED_FIN)
NCFG = 30

# float configuration: cfgf[CF_*]
CF_ALPHA0 = 0        # QueueingTime = clamp(alpha0 + alpha1 * input_len)
CF_ALPHA1 = 1
CF_TB_CAP = 2        # token bucket capacity
CF_TB_RATE = 3       # token bucket refill rate (tokens/s)
CF_XFER_BW = 4       # CPU->GPU transfer bandwidth (blocks per us)
CF_GAIE_QD = 5       # gaie-legacy queue-depth threshold
CF_GAIE_KV = 6       # gaie-legacy KV-utilisation threshold
NCFGF = 7

PREEMPT_FCFS = 0
PREEMPT_PRIORITY = 1

ROUTE_ROUND_ROBIN = 0
ROUTE_LEAST_LOADED = 1
ROUTE_WEIGHTED = 2
ROUTE_ALWAYS_BUSIEST = 3
ROUTE_PYTHON = 99    # decision made in Python (NEED_ROUTE protocol)

ADMIT_ALWAYS = 0
ADMIT_REJECT_ALL = 1
ADMIT_TOKEN_BUCKET = 2
ADMIT_TIER_SHED = 3
ADMIT_GAIE_LEGACY = 4
ADMIT_PYTHON = 99

# ---- cluster/global scalars: glob[G_*]
G_CLOCK = 0
G_ARR_CURSOR = 1     # next request (in arrival order) to arrive
G_CSEQ = 2           # cluster event seq counter
G_CHLEN = 3          # cluster heap length
G_RR = 4             # round-robin counter
G_DECISION = 5       # Python decision for the pending event (-1 = none)
G_PENDING_REQ = 6    # request waiting for a Python decision
G_ITL_FREE_N = 7     # free chunks in the ITL arena
G_GROW = 8           # what needs to grow (GROW_* bit set)
G_REJECTED = 9       # admission rejections
G_ROUTE_REJECTED = 10
G_TB_TOKENS_BITS = 11  # token bucket level (float64 bits)
G_TB_LAST = 12       # token bucket last refill time
G_LAST_EVENT = 13
G_BUDGET = 14        # events left before returning PAUSE (-1 = unlimited)
G_CACHE_LAST = 15    # last refresh of the delayed cache snapshots
G_FIN_N = 16         # requests that reached a terminal state during the current event
G_TR_ADM_N = 17      # admission trace records
G_TR_RT_N = 18       # routing trace records
G_PENDING_KIND = 19  # priority of the cluster event handed to Python
G_STOP_AT = 20       # return DONE before any event later than this (live stepping); INT64_MAX = never
# -- autoscaling: the routable instance list lives in wr[13] (positions -> instance),
#    its inverse in wr[14] (instance -> position or -1); maintained by Python
G_NROUTABLE = 21     # number of routable instances (Active), the length of wr[13]
NG = 22

# admission reasons (trace records)
AR_ADMITTED = 0
AR_REJECT_ALL = 1
AR_TOKENS = 2
AR_TIER_SHED = 3
AR_GAIE = 4
AR_TENANT_BUDGET = 5
AR_PYTHON = 6

# event priorities (instance)
EP_ARRIVAL = 0
EP_QUEUED = 1
EP_STEP = 3
EP_TIMEOUT = 6
# cluster event priorities
CP_ARRIVAL = 0
CP_ADMISSION = 1
CP_ROUTING = 2
CP_GW_EVICT = 5
CP_GW_TTL = 6
CP_GW_TICK = 7
# -- autoscaling (Python-level cluster events, handed over with NEED_EVENT)
CP_NODE_LIFECYCLE = -2   # NodeReadyEvent/NodeDrainedEvent (never scheduled, as in BLIS)
CP_INST_LOADED = -1      # InstanceLoadedEvent: Loading -> Active
CP_SCALE_TICK = 8        # ScalingTickEvent
CP_SCALE_ACT = 9         # ScaleActuationEvent

# instance lifecycle states (ins[i, I_LIFE]); only LIFE_ACTIVE instances are routable
LIFE_ACTIVE = 0
LIFE_LOADING = 1
LIFE_DRAINING = 2
LIFE_TERMINATED = 3

# kernel return codes
DONE = 0
GROW = 1
NEED_ROUTE = 2
NEED_ADMIT = 3
PAUSE = 4
NEED_EVENT = 5
NEED_FIN = 6         # requests in scratch[9][:glob[G_FIN_N]] reached a terminal state (C_FIN_HOOK)

GROW_HEAP = 1
GROW_WQ = 2
GROW_ITL = 4
GROW_ITLH = 8
GROW_CHEAP = 16
GROW_TRACE = 32

ITL_CHUNK = 32

# weighted-routing scorer codes
SC_PRECISE_PREFIX = 0
SC_QUEUE_DEPTH = 1
SC_KV_UTIL = 2
SC_LOAD_BALANCE = 3
SC_ACTIVE_REQUESTS = 4
SC_RUNNING_REQUESTS = 5
SC_LOAD_AWARE = 6
SC_VLLM_DP = 7
SC_PREFIX_AFFINITY = 8
SC_LORA_AFFINITY = 9
SC_NO_HIT_LRU = 10
