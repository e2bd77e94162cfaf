"""kv through redis-py with its defaults (RESP3 unless --protocol 2).

Usage: checks.py PORT PROTOCOL PHASE, PHASE one of: types, pipeline,
transactions, ttl, write (before a restart), read (after it). Each check
asserts; any failure exits non-zero with a traceback.
"""
import sys
import time

import redis

port, protocol, phase = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)


def types():
    r.flushall()
    assert r.ping() is True
    assert r.set("s", "v") is True
    assert r.get("s") == b"v"
    assert r.incr("n") == 1 and r.incrby("n", 5) == 6 and r.decr("n") == 5
    assert r.incrbyfloat("f", 1.5) == 1.5
    assert r.append("s", "w") == 2 and r.strlen("s") == 2
    assert r.getrange("s", 0, 0) == b"v"
    assert r.mset({"a": 1, "b": 2}) is True and r.mget("a", "b", "zz") == [b"1", b"2", None]
    assert r.set("s", "x", nx=True) is None and r.set("s", "x", xx=True, get=True) == b"vw"
    assert r.getdel("s") == b"x" and r.exists("s") == 0
    # Lists
    assert r.rpush("l", "a", "b", "c") == 3 and r.lpush("l", "z") == 4
    assert r.lrange("l", 0, -1) == [b"z", b"a", b"b", b"c"]
    assert r.lpop("l") == b"z" and r.rpop("l", 2) == [b"c", b"b"]
    assert r.llen("l") == 1 and r.lindex("l", 0) == b"a"
    # Hashes
    assert r.hset("h", mapping={"f": "1", "g": "2"}) == 2
    assert r.hgetall("h") == {b"f": b"1", b"g": b"2"}
    assert r.hincrby("h", "f", 10) == 11 and r.hincrbyfloat("h", "g", 0.5) == 2.5
    assert sorted(r.hkeys("h")) == [b"f", b"g"] and r.hlen("h") == 2
    assert r.hdel("h", "f", "nope") == 1 and r.hexists("h", "f") is False
    # Sets
    assert r.sadd("st", "a", "b", "c") == 3 and r.scard("st") == 3
    assert r.smembers("st") == {b"a", b"b", b"c"}
    assert r.sismember("st", "a") and r.smismember("st", ["a", "x"]) == [1, 0]
    assert r.srem("st", "a") == 1 and r.spop("st") in (b"b", b"c")
    # Sorted sets
    assert r.zadd("z", {"a": 1, "b": 2.5, "c": -1}) == 3
    assert r.zscore("z", "b") == 2.5 and r.zcard("z") == 3 and r.zrank("z", "a") == 1
    assert r.zrange("z", 0, -1) == [b"c", b"a", b"b"]
    pairs = [tuple(pair) for pair in r.zrange("z", 0, -1, withscores=True)]
    assert pairs == [(b"c", -1.0), (b"a", 1.0), (b"b", 2.5)], pairs
    assert r.zincrby("z", 2, "a") == 3.0
    # RESP2 replies come back as pairs, RESP3's single pop flat (as Redis').
    popped = r.zpopmin("z")
    assert popped in ([(b"c", -1.0)], [b"c", -1.0]), popped
    # Keys and types
    assert r.type("z") == b"zset" and r.type("l") == b"list" and r.type("nope") == b"none"
    assert r.rename("z", "z2") is True and r.exists("z", "z2") == 1
    assert sorted(r.keys("*")) == sorted([b"n", b"f", b"a", b"b", b"l", b"h", b"st", b"z2"])
    assert set(r.scan_iter(match="*")) == set(r.keys("*"))
    try:
        r.lpush("h", "x")
        raise AssertionError("no WRONGTYPE")
    except redis.ResponseError as e:
        assert str(e).startswith("WRONGTYPE"), e
    assert r.dbsize() == 8
    assert r.client_setname("me") and r.client_getname() == "me" or r.client_getname() == b"me"
    assert r.echo("hi") == b"hi" and "redis_version" in r.info("server")
    assert r.config_get("appendonly")["appendonly"] in ("yes", "no", b"yes", b"no")


def pipeline():
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"key:{i}", i)
    for i in range(1000):
        pipe.incr(f"key:{i}")
    results = pipe.execute()
    assert results[:1000] == [True] * 1000
    assert results[1000:] == list(range(1, 1001))
    assert r.dbsize() == 1000


def transactions():
    r.flushall()
    pipe = r.pipeline(transaction=True)
    pipe.set("t", "1").incr("t").lpush("tl", "a")
    assert pipe.execute() == [True, 2, 1]
    # A command that fails at run time does not undo the others (Redis).
    pipe = r.pipeline(transaction=True)
    pipe.set("u", "x").incr("u").set("v", "y")
    results = pipe.execute(raise_on_error=False)
    assert results[0] is True and isinstance(results[1], redis.ResponseError) and results[2] is True
    # An error while queueing: EXECABORT, nothing applied.
    r.set("w", "before")
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("MULTI")
        assert conn.read_response() in (b"OK", "OK")
        conn.send_command("SET", "w", "after")
        conn.read_response()
        conn.send_command("NOSUCHCOMMAND")
        try:
            conn.read_response()
            raise AssertionError("queued an unknown command")
        except redis.ResponseError:
            pass
        conn.send_command("EXEC")
        try:
            conn.read_response()
            raise AssertionError("EXEC ran")
        except redis.exceptions.ExecAbortError:
            pass
    finally:
        r.connection_pool.release(conn)
    assert r.get("w") == b"before"
    # WATCH: a change by another client makes EXEC return nothing.
    other = redis.Redis(host="127.0.0.1", port=port, protocol=protocol)
    with r.pipeline() as pipe:
        pipe.watch("w")
        other.set("w", "changed")
        pipe.multi()
        pipe.set("w", "mine")
        try:
            pipe.execute()
            raise AssertionError("EXEC ran after a watched key changed")
        except redis.WatchError:
            pass
    assert r.get("w") == b"changed"
    # Unchanged: EXEC runs.
    with r.pipeline() as pipe:
        pipe.watch("w")
        pipe.multi()
        pipe.set("w", "mine")
        assert pipe.execute() == [True]
    assert r.get("w") == b"mine"


def ttl():
    r.flushall()
    assert r.set("e", "v", ex=1) is True
    assert r.ttl("e") in (0, 1) and 0 < r.pttl("e") <= 1000
    assert r.expire("p", 10) is False
    r.set("p", "v")
    assert r.expire("p", 100) is True and r.persist("p") is True and r.ttl("p") == -1
    time.sleep(1.2)
    assert r.get("e") is None and r.exists("e") == 0 and r.ttl("e") == -2


def write():
    r.flushall()
    r.set("s", "v")
    r.rpush("l", "a", "b")
    r.hset("h", "f", "1")
    r.sadd("st", "m")
    r.zadd("z", {"a": 1.5})
    r.set("ttl", "v", ex=1000)
    r.set("gone", "v", px=300)
    time.sleep(0.4)


def read():
    assert r.get("s") == b"v"
    assert r.lrange("l", 0, -1) == [b"a", b"b"]
    assert r.hgetall("h") == {b"f": b"1"}
    assert r.smembers("st") == {b"m"}
    assert r.zscore("z", "a") == 1.5
    assert 990 <= r.ttl("ttl") <= 1000
    assert r.get("gone") is None


{"types": types, "pipeline": pipeline, "transactions": transactions, "ttl": ttl,
 "write": write, "read": read}[phase]()
print(f"ok {phase} protocol {protocol}")
