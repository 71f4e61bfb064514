-- HJ 212-2025 RF=1: values a logger resends from its backlog are marked. The mark is
-- provenance, so it lives with the source a reading refers to (one more row per
-- logger that ever resends), not in the readings table.
ALTER TABLE sources ADD COLUMN resend BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE sources DROP CONSTRAINT sources_protocol_device_key;
ALTER TABLE sources ADD CONSTRAINT sources_protocol_device_resend_key UNIQUE (protocol, device, resend);
