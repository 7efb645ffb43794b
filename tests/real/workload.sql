-- SPDX-License-Identifier: MIT
-- SQLite workload for tests/real/cases.sh: 100k rows inserted, indexed, queried; deterministic output.
PRAGMA journal_mode = WAL;
PRAGMA cache_size = -4000;
CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, name TEXT, payload BLOB);
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO t (k, name, payload)
  SELECT (i * 7919) % 100003, printf('name-%06d-%s', i, substr('abcdefghij', 1 + i % 10)),
         zeroblob(i % 700)
  FROM n;
COMMIT;
CREATE INDEX t_k ON t (k);
CREATE INDEX t_name ON t (name, k);
SELECT count(*), sum(k), sum(length(payload)), max(name) FROM t;
SELECT k, name FROM t WHERE k BETWEEN 500 AND 510 ORDER BY k;
SELECT substr(name, 13), count(*), avg(k) FROM t GROUP BY substr(name, 13) ORDER BY 1;
UPDATE t SET name = upper(name), payload = randomblob(0) WHERE id % 3 = 0;
DELETE FROM t WHERE k % 11 = 0;
SELECT count(*), sum(k), count(DISTINCT name) FROM t;
SELECT a.id, b.id FROM t a JOIN t b ON a.k = b.k + 1 WHERE a.id < 40 ORDER BY 1, 2 LIMIT 20;
WITH w AS (SELECT k, row_number() OVER (ORDER BY k DESC) AS r FROM t) SELECT k, r FROM w WHERE r % 10000 = 0;
CREATE TABLE words AS SELECT group_concat(name, ' ') AS g FROM (SELECT name FROM t ORDER BY k LIMIT 5000);
SELECT length(g), substr(g, 1, 60) FROM words;
VACUUM;
PRAGMA integrity_check;
