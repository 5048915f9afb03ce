# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1

.PHONY: run test venv system-deps lock

# The verified versions (constraints.txt, written by `make lock`): a change to it or to the
# ranges rebuilds the venv.
$(BIN)/realtime: setup.cfg setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(BIN)/realtime

## run: embedded single replica (in-memory, no Redis needed); prints the demo URL
run: venv
	@echo "realtime demo: http://$(HOST):$(PORT)/"
	$(BIN)/realtime serve --host $(HOST) --port $(PORT)

system-deps:
	bash scripts/install-system-deps.sh

## lock: re-resolve setup.cfg's ranges in fresh venvs; writes constraints.txt and requirements.lock
## (hashed, for the Dockerfile). Run the tests on the result before committing it.
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

# The suites that exercise delivery, recovery, drain and polling: run again on the stock path
# (the browser ones too: the demo's chat and its failover recovery).
STOCK_PATH_TESTS ?= tests/integration/test_cluster_delivery.py tests/integration/test_messaging.py \
	tests/integration/test_recovery_nginx.py tests/integration/test_drain.py \
	tests/integration/test_embedded.py tests/integration/test_nginx.py tests/browser

## test: installs what the tests need (venv, redis-server, nginx, ...) and runs them all with the
## transport layer as auto (on for the verified versions), then the delivery, recovery, drain and
## polling suites again with it off (REALTIME_TEST_FAST_PATHS; docs/architecture.md "Transport layer")
test: venv system-deps
	REALTIME_TEST_FAST_PATHS=auto $(BIN)/pytest $(PYTEST_ARGS)
	REALTIME_TEST_FAST_PATHS=off $(BIN)/pytest $(PYTEST_ARGS) $(STOCK_PATH_TESTS)

.PHONY: cluster cluster-stop cluster-status

## cluster: redis + 3 replicas + nginx (sticky) + webhook on this machine, detached; prints the URLs.
## Ports: CLUSTER_HTTP_PORT (8080), CLUSTER_REPLICA_PORTS (8001,8002,8003), CLUSTER_REDIS_PORT
## (6390), CLUSTER_WEBHOOK_PORT (8090); REDIS_URL uses that Redis instead of starting one
## (redis+cluster://h:p,h:p/ for a Redis Cluster).
cluster: venv system-deps
	$(BIN)/realtime cluster start

## cluster-stop: stops exactly the processes `make cluster` started (logs stay in run/cluster/logs)
# No venv dependency: stopping must never trigger a reinstall.
cluster-stop:
	$(BIN)/realtime cluster stop

## cluster-status: what the local cluster runs (exit 1 if it is down or partly down)
cluster-status:
	$(BIN)/realtime cluster status

.PHONY: bench bench-smoke bench-persistence bench-auth bench-sendcost bench-fanout bench-roombook

## bench: realtime vs plain Flask-SocketIO vs Socket.IO 4 on Node, 3 replicas each, same run
## (own redis-server, replicas, nginx and a Node load generator on free loopback ports; `npm ci`
## in bench/node when needed; ~15 minutes), then many small rooms, a connect storm and a failover
## storm against plain, node and node with the streams adapter (~20 more), then one Redis against a
## 3-shard Redis Cluster, Redis as the limit, then realtime on each (bench/shards.py, ~5 more).
## BENCH_ARGS="--help"
bench: venv system-deps
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

## bench-smoke: the same, all stacks once at 50 clients, the chat and shards cells tiny (~2 minutes); the integration tests run it
bench-smoke: venv system-deps
	$(BIN)/python bench/compare.py --smoke $(BENCH_ARGS)

## bench-persistence: what persistence costs on the delivery path, realtime vs plain (one replica each)
bench-persistence: venv system-deps
	$(BIN)/python bench/persistence.py $(BENCH_ARGS)

## bench-auth: what the hot-path auth caches save per connect and per API call, on vs off (one replica)
bench-auth: venv system-deps
	$(BIN)/python bench/authcache.py $(BENCH_ARGS)

## bench-sendcost: the CPU one message costs the replica it is sent to and one that delivers it
bench-sendcost: venv system-deps
	$(BIN)/python bench/sendcost.py $(BENCH_ARGS)

## bench-fanout: CPU per recipient of one broadcast in process, python-socketio's path against ours
bench-fanout: venv
	$(BIN)/python bench/fanout.py $(BENCH_ARGS)

## bench-roombook: a replica's room bookkeeping (membership check, disconnects) as connections grow, stock against ours
bench-roombook: venv
	$(BIN)/python bench/roombook.py $(BENCH_ARGS)
