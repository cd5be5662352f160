-- Every error-free balance observation: the history of each account's current balance.
SELECT account_id, observed_at, date AS observed_on, currency, "current" / 100.0 AS "current",
       available / 100.0 AS available
FROM balances
WHERE error IS NULL AND "current" IS NOT NULL
ORDER BY account_id, observed_at;
