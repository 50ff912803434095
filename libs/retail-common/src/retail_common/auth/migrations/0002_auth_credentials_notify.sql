-- Every change to a credential is announced on channel `retail_auth_credentials` with its key id as the
-- payload ('*' after TRUNCATE), so each replica's credential cache (retail_common.auth.CredentialCache)
-- drops it; the notification is sent when the changing transaction commits.
CREATE FUNCTION auth_credentials_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('retail_auth_credentials', '*');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('retail_auth_credentials', OLD.key_id);
    ELSE
        PERFORM pg_notify('retail_auth_credentials', NEW.key_id);
        IF TG_OP = 'UPDATE' AND OLD.key_id IS DISTINCT FROM NEW.key_id THEN
            PERFORM pg_notify('retail_auth_credentials', OLD.key_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER auth_credentials_notify_row
    AFTER INSERT OR UPDATE OR DELETE ON auth_credentials
    FOR EACH ROW EXECUTE FUNCTION auth_credentials_notify();

CREATE TRIGGER auth_credentials_notify_truncate
    AFTER TRUNCATE ON auth_credentials
    FOR EACH STATEMENT EXECUTE FUNCTION auth_credentials_notify();
