package org.clipkit.core;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32;

/**
 * In-memory store of L2-normalised embeddings keyed by a string (e.g. a MediaStore content URI plus
 * its date_modified), with a small binary file format.
 *
 * <h3>File format "CKEI" version 1 (all integers little-endian)</h3>
 * <pre>
 * offset  size  field
 * 0       4     magic, ASCII "CKEI"
 * 4       4     int32 version = 1
 * 8       4     int32 dim (> 0)
 * 12      4     int32 count (>= 0)
 * 16      4     int32 m = byte length of model id
 * 20      m     model id, UTF-8 (e.g. the image encoder's sha256; an index whose id differs from the
 *               current model must be rebuilt)
 * then count records:
 *         4     int32 k = byte length of key
 *         k     key, UTF-8
 *         4*dim float32 vector, L2-normalised
 * last    4     uint32 CRC-32 (java.util.zip.CRC32) of every preceding byte
 * </pre>
 * Keys are unique; {@link #put} replaces an existing key's vector. Limits: key and model id
 * at most 64 KiB each, dim at most 65536.
 */
public final class EmbeddingIndex {
    public static final int VERSION = 1;
    private static final byte[] MAGIC = {'C', 'K', 'E', 'I'};
    private static final int MAX_STR = 1 << 16;

    private final int dim;
    private final String modelId;
    private final List<String> keys = new ArrayList<>();
    private final List<float[]> vectors = new ArrayList<>();
    private final Map<String, Integer> byKey = new HashMap<>();

    public EmbeddingIndex(int dim, String modelId) {
        if (dim <= 0 || dim > 65536) throw new IllegalArgumentException("bad dim " + dim);
        this.dim = dim;
        this.modelId = modelId == null ? "" : modelId;
    }

    public int dim() { return dim; }
    public int size() { return keys.size(); }
    public String modelId() { return modelId; }
    public String key(int i) { return keys.get(i); }
    /** The stored (normalised) vector; do not modify. */
    public float[] vector(int i) { return vectors.get(i); }
    public boolean contains(String key) { return byKey.containsKey(key); }

    /** Adds or replaces; the vector is L2-normalised on the way in. */
    public synchronized void put(String key, float[] embedding) {
        if (embedding.length != dim) throw new IllegalArgumentException("dim " + embedding.length + " != " + dim);
        if (key.getBytes(StandardCharsets.UTF_8).length > MAX_STR) throw new IllegalArgumentException("key too long");
        float[] v = Ranking.l2Normalize(embedding);
        Integer at = byKey.get(key);
        if (at != null) {
            vectors.set(at, v);
        } else {
            byKey.put(key, keys.size());
            keys.add(key);
            vectors.add(v);
        }
    }

    public synchronized void write(OutputStream out) throws IOException {
        ByteArrayOutputStream b = new ByteArrayOutputStream(20 + size() * (8 + 4 * dim));
        byte[] mid = modelId.getBytes(StandardCharsets.UTF_8);
        b.write(MAGIC);
        writeInt(b, VERSION);
        writeInt(b, dim);
        writeInt(b, size());
        writeInt(b, mid.length);
        b.write(mid);
        ByteBuffer vec = ByteBuffer.allocate(4 * dim).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < size(); i++) {
            byte[] k = keys.get(i).getBytes(StandardCharsets.UTF_8);
            writeInt(b, k.length);
            b.write(k);
            vec.clear();
            for (float f : vectors.get(i)) vec.putFloat(f);
            b.write(vec.array());
        }
        CRC32 crc = new CRC32();
        byte[] body = b.toByteArray();
        crc.update(body, 0, body.length);
        out.write(body);
        ByteBuffer t = ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN);
        t.putInt((int) crc.getValue());
        out.write(t.array());
        out.flush();
    }

    /** Reads an index; throws IOException on bad magic/version, truncation or CRC mismatch. */
    public static EmbeddingIndex read(InputStream in) throws IOException {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) all.write(buf, 0, n);
        byte[] data = all.toByteArray();
        if (data.length < 24) throw new IOException("index file too short");
        CRC32 crc = new CRC32();
        crc.update(data, 0, data.length - 4);
        ByteBuffer bb = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if ((int) crc.getValue() != bb.getInt(data.length - 4)) throw new IOException("index CRC mismatch (corrupt file)");
        ByteBuffer body = ByteBuffer.wrap(data, 0, data.length - 4).order(ByteOrder.LITTLE_ENDIAN);
        try {
            for (byte m : MAGIC) if (body.get() != m) throw new IOException("not an embedding index (bad magic)");
            int version = body.getInt();
            if (version != VERSION) throw new IOException("index version " + version + " unsupported");
            int dim = body.getInt();
            int count = body.getInt();
            if (dim <= 0 || dim > 65536 || count < 0) throw new IOException("bad index header");
            EmbeddingIndex idx = new EmbeddingIndex(dim, readString(body));
            for (int i = 0; i < count; i++) {
                String key = readString(body);
                float[] v = new float[dim];
                for (int j = 0; j < dim; j++) v[j] = body.getFloat();
                if (idx.byKey.containsKey(key)) throw new IOException("duplicate key in index: " + key);
                idx.byKey.put(key, idx.keys.size());
                idx.keys.add(key);
                idx.vectors.add(v);
            }
            if (body.hasRemaining()) throw new IOException("trailing bytes in index");
            return idx;
        } catch (java.nio.BufferUnderflowException e) {
            throw new EOFException("truncated index");
        }
    }

    private static String readString(ByteBuffer b) throws IOException {
        int len = b.getInt();
        if (len < 0 || len > MAX_STR || len > b.remaining()) throw new IOException("bad string length " + len);
        byte[] s = new byte[len];
        b.get(s);
        return new String(s, StandardCharsets.UTF_8);
    }

    private static void writeInt(OutputStream o, int v) throws IOException {
        o.write(v & 0xff);
        o.write((v >>> 8) & 0xff);
        o.write((v >>> 16) & 0xff);
        o.write((v >>> 24) & 0xff);
    }
}
